-- The schemas PostgREST exposes. Supabase's linter reads this setting to know which schemas
-- are reachable from the API; without it, every exposed-schema lint is skipped.
do $settings$
begin
  execute format(
    'alter database %I set pgrst.db_schemas = %L', current_database(), 'public, graphql_public'
  );
end
$settings$;
