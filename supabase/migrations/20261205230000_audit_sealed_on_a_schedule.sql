-- The audit trail seals itself where pg_cron is installed: deploying schedules the sealer
-- and a backlog check that raises a security alert when a row stays unsealed too long.
-- Where pg_cron is not installed, nothing is scheduled (seal with `payguard audit seal
-- --follow`); `payguard audit status` reports the backlog either way.

alter type public.security_alert_kind add value if not exists 'audit_seal_backlog';

insert into private.settings (key, value, description)
values (
  'audit_seal_alert_seconds', '300',
  'An audit row still unsealed this many seconds after it was written raises a security '
  || 'alert (audit_seal_backlog), at most one per this many seconds while the backlog lasts.'
);

/**
 * The sealing backlog: the unsealed rows, the time the oldest was written, the last seal,
 * the alert threshold, and the pg_cron jobs that seal (none where pg_cron is not installed).
 */
create or replace function private.audit_seal_status(
  out unsealed_rows bigint,
  out oldest_unsealed_at timestamptz,
  out sealed_through bigint,
  out last_sealed_at timestamptz,
  out alert_after_seconds integer,
  out scheduled_jobs text[]
)
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  head record;
begin
  select * into head from private.audit_chain_head();
  sealed_through := head.through_seq;
  select count(*), min(l.timestamp) into unsealed_rows, oldest_unsealed_at
  from public.payment_audit_logs as l
  where l.seq > head.through_seq;
  select max(s.sealed_at) into last_sealed_at from private.audit_seals as s;
  alert_after_seconds := private.setting('audit_seal_alert_seconds')::integer;
  scheduled_jobs := '{}';
  if exists (select from pg_catalog.pg_extension as e where e.extname = 'pg_cron') then
    -- Dynamic, its schema named apart: the cron schema exists only where the extension does.
    execute format(
      'select coalesce(array_agg(j.jobname || '': '' || j.schedule || '' '' || j.command '
      || 'order by j.jobname), ''{}'') from %I.job as j '
      || 'where j.jobname like ''payguard-audit-%%'' and j.active',
      'cron'
    )
    into scheduled_jobs;
  end if;
end
$$;

/**
 * pg_cron's check: raise an audit_seal_backlog security alert when the oldest unsealed
 * audit row is older than `audit_seal_alert_seconds`, unless one was raised within that
 * many seconds. Returns true when it raised one.
 */
create or replace function private.check_audit_seal_backlog() returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  backlog record;
  threshold interval;
begin
  select * into backlog from private.audit_seal_status();
  threshold := make_interval(secs => backlog.alert_after_seconds);
  if backlog.oldest_unsealed_at is null
    or backlog.oldest_unsealed_at > now() - threshold
    or exists (
      select from public.security_alerts as a
      where a.kind = 'audit_seal_backlog' and a.created_at >= now() - threshold
    ) then
    return false;
  end if;
  perform private.raise_security_alert(
    'audit_seal_backlog', null, 'audit.seal',
    jsonb_build_object(
      'unsealed_rows', backlog.unsealed_rows,
      'oldest_unsealed_at', backlog.oldest_unsealed_at,
      'sealed_through', backlog.sealed_through,
      'last_sealed_at', backlog.last_sealed_at,
      'alert_after_seconds', backlog.alert_after_seconds
    )
  );
  return true;
end
$$;

/**
 * Schedule the sealer and the backlog check with pg_cron, where the extension is installed
 * in this database; a job of the same name is replaced, so it is safe to run again. Returns
 * what it did.
 */
create or replace function private.schedule_audit_sealer() returns text
language plpgsql
set search_path = ''
as $$
begin
  if not exists (select from pg_catalog.pg_extension as e where e.extname = 'pg_cron') then
    return 'pg_cron is not installed in this database: nothing scheduled; seal with '
      || '`payguard audit seal --follow`';
  end if;
  -- Dynamic, its schema named apart: the cron schema exists only where the extension does.
  execute format('select %I.schedule($1, $2, $3)', 'cron') using
    'payguard-audit-sealer', '* * * * *',
    'begin; select private.seal_audit_log(); commit; '
    || 'begin; select private.seal_audit_log(); commit;';
  execute format('select %I.schedule($1, $2, $3)', 'cron') using
    'payguard-audit-seal-check', '* * * * *', 'select private.check_audit_seal_backlog()';
  return 'scheduled with pg_cron: payguard-audit-sealer and payguard-audit-seal-check';
end
$$;

select private.schedule_audit_sealer();
