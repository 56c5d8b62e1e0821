"""The declarative schema: the files under supabase/schemas/ that config.toml lists, a database
built from them, catalog snapshots of databases, and their comparison with the migrations."""
