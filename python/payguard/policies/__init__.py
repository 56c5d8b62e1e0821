"""Policies as code: specs under policies/, the SQL generated from them, and the check that a
database matches them."""
