"""The performance stage: workload and test queries, measured and judged before and after."""
