"""Pure judgement: offenders, their evidence and their fixes, from a view of a target."""
