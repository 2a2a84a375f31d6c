select
    customers.customer_id,
    customers.customer_name,
    customers.email,
    customers.signed_up_on,
    orders.order_count,
    orders.lifetime_value,
    orders.first_order_on,
    orders.last_order_on,
    case
        when orders.lifetime_value >= 200 then 'gold'
        when orders.order_count > 0 then 'active'
        else 'prospect'
    end as segment
from {{ ref('stg_customers') }} as customers
join {{ ref('customer_orders') }} as orders
    on orders.customer_id = customers.customer_id
