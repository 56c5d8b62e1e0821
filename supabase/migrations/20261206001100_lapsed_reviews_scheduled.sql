-- Where pg_cron is installed, the deploy schedules private.release_lapsed_reviews every five
-- minutes: lapsed milestone reviews are told to both parties (and released, when
-- milestone_review_auto_release is on) with no manual step.

/**
 * Schedule private.release_lapsed_reviews every five minutes with pg_cron, where the extension
 * is installed in this database (as the audit sealer is, audit_chain.sql); a job of the same
 * name is replaced, so it is safe to run again. Returns what it did.
 */
create or replace function private.schedule_lapsed_reviews() returns text
language plpgsql
set search_path = ''
as $$
begin
  if not exists (select from pg_catalog.pg_extension as e where e.extname = 'pg_cron') then
    return 'pg_cron is not installed in this database: nothing scheduled; run '
      || 'select private.release_lapsed_reviews() from a scheduler of your own';
  end if;
  -- Dynamic, its schema named apart: the cron schema exists only where the extension does.
  execute format('select %I.schedule($1, $2, $3)', 'cron') using
    'payguard-lapsed-reviews', '*/5 * * * *', 'select private.release_lapsed_reviews()';
  return 'scheduled with pg_cron: payguard-lapsed-reviews';
end
$$;

select private.schedule_lapsed_reviews();
