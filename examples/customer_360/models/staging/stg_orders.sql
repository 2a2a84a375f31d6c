select
    order_id,
    customer_id,
    cast(ordered_on as date) as ordered_on,
    status,
    round(amount_cents / 100.0, 2) as amount
from {{ ref('raw_orders') }}
