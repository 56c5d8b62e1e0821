-- The audit trail, part 4: retention. Audit rows are kept 10 years (private.audit_retention).
-- After that, private.purge_audit_logs() removes them: only sealed rows, only from the start
-- of the chain (so what remains still verifies from the recorded purge point), and it
-- records each run twice: in private.audit_purges, and as an audit row of its own.

/**
 * Remove the sealed audit rows older than the retention period, from the start of the
 * chain up to the first row that is newer or not yet sealed. Returns what it did.
 */
create function private.purge_audit_logs() returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  cutoff timestamptz := now() - private.audit_retention();
  stop_seq bigint;
  last_row public.payment_audit_logs;
  purged bigint;
  actor private.audit_actor := private.audit_actor();
  summary jsonb;
begin
  -- One purge at a time, and none while the sealer works.
  perform pg_advisory_xact_lock(hashtextextended('payguard.seal_audit_log', 0));
  select min(l.seq) into stop_seq from public.payment_audit_logs as l
  where l.timestamp >= cutoff or l.row_hash is null;
  select * into last_row from public.payment_audit_logs as l
  where stop_seq is null or l.seq < stop_seq
  order by l.seq desc
  limit 1;
  if last_row.seq is null or last_row.timestamp >= cutoff or last_row.row_hash is null then
    summary := jsonb_build_object('purged_rows', 0, 'older_than', cutoff);
  else
    delete from public.payment_audit_logs as l where l.seq <= last_row.seq;
    get diagnostics purged = row_count;
    insert into private.audit_purges (through_seq, through_hash, purged_rows, older_than, purged_by)
    values (last_row.seq, last_row.row_hash, purged, cutoff, coalesce(actor.user_role, 'unknown'));
    summary := jsonb_build_object(
      'purged_rows', purged, 'through_seq', last_row.seq, 'older_than', cutoff
    );
  end if;
  insert into public.payment_audit_logs (
    operation, entity_type, entity_id, user_id, user_role, ip_address, user_agent,
    new_values, success, metadata
  )
  values (
    'PURGE', 'payment_audit_logs', coalesce(last_row.seq::text, 'none'), actor.user_id,
    actor.user_role, actor.ip_address, actor.user_agent, summary, true, actor.metadata
  );
  return summary;
end
$$;

-- Run by operations as the owner (`payguard audit purge`, or a scheduled job); no API role.
revoke all on function private.purge_audit_logs() from public;
