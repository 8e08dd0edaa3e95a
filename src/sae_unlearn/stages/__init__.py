"""Pipeline stages, one module each; today the name-only targets, the rest follow with issue 22's restructure."""
