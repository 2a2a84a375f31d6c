-- One row per customer, with what they ordered (returned orders do not count).
select
    customers.customer_id,
    count(orders.order_id) as order_count,
    coalesce(sum(orders.amount), 0) as lifetime_value,
    min(orders.ordered_on) as first_order_on,
    max(orders.ordered_on) as last_order_on
from {{ ref('stg_customers') }} as customers
left join {{ ref('stg_orders') }} as orders
    on orders.customer_id = customers.customer_id
    and orders.status <> 'returned'
group by customers.customer_id
