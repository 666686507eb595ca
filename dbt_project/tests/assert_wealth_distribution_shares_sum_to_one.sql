{#- Within each (profile, hour, dimension, side) the shares sum to 1 (assets among
    assets, liabilities among liabilities), unless the side's total is 0 or unknown. -#}

select
    profile_id,
    valuation_hour,
    dimension,
    side,
    sum(share) as total_share,
    count(share) as n_shares,
    count(*) as n_buckets

from {{ ref('mart_wealth_distribution') }}
where {{ hour_window_filter('valuation_hour') }}
group by profile_id, valuation_hour, dimension, side
having count(share) > 0
    and (count(share) <> count(*) or abs(sum(share) - 1) > 0.000001)
