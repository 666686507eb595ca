with

source as (

    select * from {{ source('raw', 'fetches') }}

),

renamed as (

    select
        fetch_hour,
        profile_id,
        linked_account_id,
        provider_id,
        started_at,
        finished_at,
        status,
        status = 'success' as is_success,
        error_code,
        error_message,
        attempt,
        coalesce(warnings, '[]') as warnings

    from source

)

select * from renamed
