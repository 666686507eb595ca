{#-
  Every parent row equals the sum of its child rows (1e-6 relative tolerance), at every
  hour of the build window. `measures` maps parent columns to child columns:
  [{parent: value, child: value}, ...]. A parent without children must be 0; children
  without a parent fail. Children with a NULL value (nothing could price them) are
  not summed, as in the marts (which count them in unvalued_items).
-#}
{% test reconciles_with_children(model, children, keys, measures, hour_column='valuation_hour') %}
with parent as (
    select
        {{ keys | join(', ') }},
        {% for m in measures %}{{ m.parent }} as parent_{{ loop.index }}{{ ',' if not loop.last }}
        {% endfor %}
    from {{ model }}
    where {{ hour_window_filter(hour_column) }}
),

child as (
    select
        {{ keys | join(', ') }},
        {% for m in measures %}{{ valued_sum(m.child) }} as child_{{ loop.index }},
        {% endfor %}
        count(*) as n_children
    from {{ children }}
    where {{ hour_window_filter(hour_column) }}
    group by {{ keys | join(', ') }}
),

compared as (
    select
        {% for k in keys %}coalesce(parent.{{ k }}, child.{{ k }}) as {{ k }},
        {% endfor %}
        parent.{{ keys[0] }} is null as is_orphan_child,
        {% for m in measures %}parent.parent_{{ loop.index }}, coalesce(child.child_{{ loop.index }}, case when child.n_children is null then 0 end) as child_{{ loop.index }}{{ ',' if not loop.last }}
        {% endfor %}
    from parent
    full outer join child
        on {% for k in keys %}parent.{{ k }} = child.{{ k }}{{ ' and ' if not loop.last }}{% endfor %}
)

select *
from compared
where is_orphan_child
    {% for m in measures %}or not {{ approx_equal('parent_' ~ loop.index, 'child_' ~ loop.index) }}
    {% endfor %}
{% endtest %}
