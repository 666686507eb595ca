{{ config(meta={'dagster': {'ref': {'name': 'mart_wealth_distribution'}}}) }}
{#- Every dimension of the distribution splits the same totals as the profile mart:
    asset buckets sum to total_assets, liability buckets to total_liabilities. -#}

with

distribution as (

    select
        profile_id,
        valuation_hour,
        dimension,
        {{ valued_sum("case when side = 'asset' then value else 0 end") }} as assets,
        {{ valued_sum("case when side = 'liability' then value else 0 end") }} as liabilities

    from {{ ref('mart_wealth_distribution') }}
    where {{ hour_window_filter('valuation_hour') }}
    group by profile_id, valuation_hour, dimension

),

profiles as (

    select * from {{ ref('fct_profile_valuation_hourly') }}
    where {{ hour_window_filter('valuation_hour') }}

)

select distribution.*, profiles.total_assets, profiles.total_liabilities
from distribution
inner join profiles
    on distribution.profile_id = profiles.profile_id
    and distribution.valuation_hour = profiles.valuation_hour
where not {{ approx_equal('distribution.assets', 'profiles.total_assets') }}
    or not {{ approx_equal('distribution.liabilities', 'profiles.total_liabilities') }}
