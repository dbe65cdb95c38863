"""Pure analysis of parsed pages: cardinality, churn, value patterns, the view of a target."""
