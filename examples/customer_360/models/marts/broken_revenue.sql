-- Deliberately wrong, and in no deployment's CompiledArtifacts: the tests and `make demo`
-- run it to show how a model whose SQL is wrong fails (dbt's own error, in Dagster).
select customer_id, sum(revenue_usd) as revenue
from {{ ref('customer_orders') }}
group by customer_id
