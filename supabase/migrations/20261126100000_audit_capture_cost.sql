-- The audit trail's cost on the write path. Each audited statement pays for its audit
-- insert once per statement as well as once per row, so this trims both:
--   * the hash-shape checks move from check constraints on payment_audit_logs (which every
--     insert statement parses and prepares again) into the guard on the sealer's update,
--     the only write that sets hashes;
--   * the request's actor is worked out once per request in a transaction, its application
--     role included; a change to users (a role, a user added or removed) in the transaction
--     makes it be worked out again;
--   * a row is redacted only when its table has redacted columns, and an update's old and
--     new rows are redacted once each, not once per joined pair;
--   * the sealer serializes rows without a function call per row, and updates each row where
--     it read it rather than looking it up by seq again;
--   * automatic ANALYZE skips the payload columns.
-- What is recorded, and the hashes, do not change.

alter table public.payment_audit_logs
drop constraint payment_audit_logs_sealed_together,
drop constraint payment_audit_logs_hash_length;

-- The planner has no use for statistics on the log's payloads (no query selects rows by
-- them), and computing them was most of what each automatic ANALYZE of this fast-growing
-- table cost.
alter table public.payment_audit_logs
alter column old_values set statistics 0,
alter column new_values set statistics 0,
alter column metadata set statistics 0,
alter column user_agent set statistics 0;

/** BEFORE UPDATE OR DELETE on payment_audit_logs, for each row. */
create or replace function private.guard_audit_log_row() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  retention interval := private.audit_retention();
begin
  if tg_op = 'UPDATE' then
    if old.row_hash is null and old.prev_hash is null
      and coalesce(octet_length(new.row_hash), 0) = 32
      and coalesce(octet_length(new.prev_hash), 0) = 32
      and (new.seq, new.id, new.timestamp, new.operation, new.entity_type, new.entity_id,
        new.user_id, new.user_role, new.ip_address, new.user_agent, new.old_values,
        new.new_values, new.success, new.error_message, new.metadata)
      is not distinct from
      (old.seq, old.id, old.timestamp, old.operation, old.entity_type, old.entity_id,
        old.user_id, old.user_role, old.ip_address, old.user_agent, old.old_values,
        old.new_values, old.success, old.error_message, old.metadata)
      then
      return new;
    end if;
    raise exception 'payment_audit_logs is append-only: row % cannot be changed', old.seq
    using errcode = '42501',
    hint = 'only the sealer fills in the hashes of an unsealed row, once, 32 bytes each';
  end if;
  if old.row_hash is not null and old.timestamp < now() - retention then
    return old;
  end if;
  raise exception 'payment_audit_logs is append-only: row % is kept until %',
  old.seq, old.timestamp + retention
  using errcode = '42501',
  hint = 'rows older than the retention period are removed only by private.purge_audit_logs()';
end
$$;

-- The trigger fires for every update but the sealer's (its condition is the function's,
-- written out: a function call here would cost the sealer a call per row).
drop trigger guard_audit_log_update on public.payment_audit_logs;
create trigger guard_audit_log_update
before update on public.payment_audit_logs
for each row when (
  not (
    old.row_hash is null and old.prev_hash is null
    and coalesce(octet_length(new.row_hash), 0) = 32
    and coalesce(octet_length(new.prev_hash), 0) = 32
    and (
      new.seq, new.id, new.timestamp, new.operation, new.entity_type, new.entity_id,
      new.user_id, new.user_role, new.ip_address, new.user_agent, new.old_values,
      new.new_values, new.success, new.error_message, new.metadata
    )
    is not distinct from
    (
      old.seq, old.id, old.timestamp, old.operation, old.entity_type, old.entity_id,
      old.user_id, old.user_role, old.ip_address, old.user_agent, old.old_values,
      old.new_values, old.success, old.error_message, old.metadata
    )
  )
)
execute function private.guard_audit_log_row();

/**
 * Who is acting, from where: as before (20261126080000_audit_capture.sql), with the user's
 * application role kept with the rest for the request. It runs with its caller's rights:
 * every caller is a security definer function of the owner.
 */
create or replace function private.audit_actor() returns private.audit_actor
language plpgsql
stable
set search_path = ''
as $$
declare
  request_key text := concat_ws(
    e'\x1f', current_setting('role', true), current_setting('request.jwt.claims', true),
    current_setting('request.jwt.claim.sub', true), current_setting('request.headers', true),
    current_setting('request.method', true), current_setting('request.path', true),
    session_user::text
  );
  cached text := current_setting('payguard.audit_request', true);
  headers jsonb;
  first_hop text;
  ip text;
  actor private.audit_actor;
begin
  if cached is not null and starts_with(cached, request_key || e'\x1e') then
    return substr(cached, length(request_key) + 2)::private.audit_actor;
  end if;
  headers := coalesce(nullif(current_setting('request.headers', true), '')::jsonb, '{}');
  first_hop := nullif(btrim(split_part(headers ->> 'x-forwarded-for', ',', 1)), '');
  if first_hop is not null and private.looks_like_ip(first_hop) then
    ip := first_hop;
  elsif headers ? 'x-real-ip' and private.looks_like_ip(btrim(headers ->> 'x-real-ip')) then
    ip := btrim(headers ->> 'x-real-ip');
  else
    ip := host(inet_client_addr());
  end if;
  actor.user_id := auth.uid();
  actor.ip_address := ip;
  actor.user_agent := headers ->> 'user-agent';
  actor.metadata := jsonb_strip_nulls(jsonb_build_object(
    'method', nullif(current_setting('request.method', true), ''),
    'path', nullif(current_setting('request.path', true), ''),
    'correlation_id', coalesce(headers ->> 'x-correlation-id', headers ->> 'x-request-id'),
    'forwarded_for', nullif(left(headers ->> 'x-forwarded-for', 200), ip),
    'db_role', coalesce(nullif(current_setting('role', true), 'none'), session_user::text),
    'transaction', pg_catalog.pg_current_xact_id()::text
  ));
  -- What the client sent never brings a card number into the log.
  if private.holds_card_number(concat_ws(' ', actor.user_agent, actor.metadata::text)) then
    actor.user_agent := private.without_card_numbers(actor.user_agent);
    actor.metadata := private.without_card_data(actor.metadata);
  end if;
  actor.user_role := coalesce(
    (select u.role::text from public.users as u where u.id = actor.user_id),
    actor.metadata ->> 'db_role'
  );
  -- Kept for the rest of the transaction (a setting local to it, so that a rolled-back
  -- subtransaction forgets it too).
  perform set_config('payguard.audit_request', request_key || e'\x1e' || actor::text, true);
  return actor;
end
$$;

/**
 * AFTER INSERT, UPDATE OR DELETE on public.users, for each statement: a user's application
 * role may have changed, so the actor is worked out again for the next audit row.
 */
create function private.forget_audit_actor() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform set_config('payguard.audit_request', '', true);
  return null;
end
$$;

revoke all on function private.forget_audit_actor() from public;

create trigger forget_audit_actor
after insert or delete or update of role on public.users
for each statement execute function private.forget_audit_actor();

/**
 * AFTER INSERT, UPDATE or DELETE, for each row, on every audited table: one audit row. The
 * trigger's argument names the table's key column.
 */
create or replace function private.capture_audit_row() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  actor private.audit_actor := private.audit_actor();
  redacts boolean := cardinality(private.audit_redacted_columns(tg_table_name)) > 0;
  old_values jsonb;
  new_values jsonb;
begin
  if tg_op <> 'INSERT' then
    old_values := to_jsonb(old);
    if redacts then
      old_values := private.audit_redact(tg_table_name, old_values);
    end if;
  end if;
  if tg_op <> 'DELETE' then
    new_values := to_jsonb(new);
    if redacts then
      new_values := private.audit_redact(tg_table_name, new_values);
    end if;
  end if;
  -- The transaction has its id before the seq is drawn (it has just changed a row), as
  -- private.stamp_audit_log_row() makes sure for other inserts; the actor holds no card data.
  insert into public.payment_audit_logs (
    seq, timestamp, operation, entity_type, entity_id, user_id, user_role, ip_address,
    user_agent, old_values, new_values, success, metadata
  )
  values (
    nextval('private.audit_log_seq'), now(), tg_op, tg_table_name,
    coalesce(new_values, old_values) ->> tg_argv[0], actor.user_id, actor.user_role,
    actor.ip_address, actor.user_agent, old_values, new_values, true, actor.metadata
  );
  return null;
end
$$;

/**
 * AFTER INSERT, for each statement, on tables whose rows are only inserted: one audit row
 * per new row, the same as private.capture_audit_row() writes. The trigger's argument names
 * the table's key column; its transition table is called `inserted`.
 */
create or replace function private.capture_audit_inserts() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  actor private.audit_actor := private.audit_actor();
  redacts boolean := cardinality(private.audit_redacted_columns(tg_table_name)) > 0;
begin
  insert into public.payment_audit_logs (
    seq, timestamp, operation, entity_type, entity_id, user_id, user_role, ip_address,
    user_agent, old_values, new_values, success, metadata
  )
  select
    nextval('private.audit_log_seq'), now(), 'INSERT', tg_table_name,
    added.row_values ->> tg_argv[0], actor.user_id, actor.user_role, actor.ip_address,
    actor.user_agent, null, added.row_values, true, actor.metadata
  from (
    select
      case
        when redacts then private.audit_redact(tg_table_name, to_jsonb(i))
        else to_jsonb(i)
      end as row_values
    from inserted as i
  ) as added;
  return null;
end
$$;

/**
 * AFTER UPDATE, for each statement: one audit row per updated row, its old and new values
 * paired by the key column the trigger's argument names. Transition tables `removed` (old
 * rows) and `added` (new rows); each row is turned into its audit values once.
 */
create or replace function private.capture_audit_updates() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  actor private.audit_actor := private.audit_actor();
  redacts boolean := cardinality(private.audit_redacted_columns(tg_table_name)) > 0;
begin
  insert into public.payment_audit_logs (
    seq, timestamp, operation, entity_type, entity_id, user_id, user_role, ip_address,
    user_agent, old_values, new_values, success, metadata
  )
  with before_change as materialized (
    select
      case
        when redacts then private.audit_redact(tg_table_name, to_jsonb(r))
        else to_jsonb(r)
      end as row_values
    from removed as r
  ),

  after_change as materialized (
    select
      case
        when redacts then private.audit_redact(tg_table_name, to_jsonb(a))
        else to_jsonb(a)
      end as row_values
    from added as a
  )

  select
    nextval('private.audit_log_seq'), now(), 'UPDATE', tg_table_name,
    after_change.row_values ->> tg_argv[0], actor.user_id, actor.user_role, actor.ip_address,
    actor.user_agent, before_change.row_values, after_change.row_values, true, actor.metadata
  from before_change
  inner join after_change
    on (before_change.row_values ->> tg_argv[0]) = (after_change.row_values ->> tg_argv[0]);
  return null;
end
$$;

/**
 * Seal what can be sealed: at most `max_rows` rows per call. Returns how many rows were
 * sealed. Concurrent calls do not collide: one seals, the others return 0. It must run in
 * a transaction of its own (autocommit), since its transaction id is part of the fence.
 * As in 20261126080200_audit_sealing.sql, but for its cost per row: the canonical text is
 * written out in the query, and each row is updated where it was read.
 */
create or replace function private.seal_audit_log(max_rows integer default 100000) returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  drawn bigint;
  own_xid xid8;
  fence private.audit_seal_fence;
  head record;
  next_seq bigint;
  prev bytea;
  body bytea;
  bodies bytea [];
  skipped int8multirange;
  seqs bigint [];
  ctids tid [];
  updated bigint;
  hashes bytea [] := '{}'::bytea [];
  sealed_through bigint;
begin
  if pg_current_xact_id_if_assigned() is not null then
    raise exception 'private.seal_audit_log() runs in a transaction of its own'
    using errcode = '25001', hint = 'call it in autocommit mode, not after other writes';
  end if;
  if not pg_try_advisory_xact_lock(hashtextextended('payguard.seal_audit_log', 0)) then
    return 0;
  end if;
  -- First the highest seq drawn, then an id of our own: in this order, a transaction that
  -- drew a seq up to `drawn` has a lower id than ours.
  select case when s.is_called then s.last_value else 0 end into drawn
  from private.audit_log_seq as s;
  own_xid := pg_current_xact_id();

  select * into fence from private.audit_seal_fence;
  if not found then
    insert into private.audit_seal_fence (through_seq, below_xid) values (drawn, own_xid);
    return 0;
  end if;
  -- Every transaction with a lower id than the fence's has ended (the oldest one running
  -- is not older than it).
  if pg_snapshot_xmin(pg_current_snapshot()) < fence.below_xid then
    return 0;
  end if;

  select * into head from private.audit_chain_head();
  -- The rows' canonical bytes in one query; only the chaining itself is a loop, of one
  -- hash per row. Gaps and previous hashes are worked out set-based afterwards.
  select
    coalesce(array_agg(pending.seq order by pending.seq), '{}'::bigint []),
    coalesce(array_agg(pending.row_ctid order by pending.seq), '{}'::tid []),
    coalesce(array_agg(pending.body order by pending.seq), '{}'::bytea [])
  into seqs, ctids, bodies
  from (
    select
      l.seq,
      l.ctid as row_ctid,
      -- private.audit_row_canonical(l), the same text written out: a function call per row
      -- (with its search path set) cost more than the serialization itself.
      convert_to(concat(
        '[', l.seq, ', ', to_jsonb(l.id), ', ', extract(epoch from l.timestamp), ', ',
        to_jsonb(l.operation), ', ', to_jsonb(l.entity_type), ', ', to_jsonb(l.entity_id),
        ', ', coalesce(to_jsonb(l.user_id)::text, 'null'), ', ', to_jsonb(l.user_role), ', ',
        coalesce(to_jsonb(l.ip_address)::text, 'null'), ', ',
        coalesce(to_jsonb(l.user_agent)::text, 'null'), ', ',
        coalesce(l.old_values::text, 'null'), ', ', coalesce(l.new_values::text, 'null'), ', ',
        case when l.success then 'true' else 'false' end, ', ',
        coalesce(to_jsonb(l.error_message)::text, 'null'), ', ',
        coalesce(l.metadata::text, 'null'), ']'
      ), 'UTF8') as body
    from public.payment_audit_logs as l
    where l.seq > head.through_seq and l.seq <= fence.through_seq
    order by l.seq
    limit max_rows
  ) as pending;
  prev := head.head_hash;
  foreach body in array bodies loop
    prev := sha256(prev || body);
    hashes := hashes || prev;
  end loop;
  select coalesce(
    range_agg(int8range(gap.after_seq + 1, gap.seq)) filter (where gap.seq > gap.after_seq + 1),
    '{}'::int8multirange
  )
  into skipped
  from (
    select
      s.seq,
      lag(s.seq, 1, head.through_seq) over (order by s.position) as after_seq
    from unnest(seqs) with ordinality as s (seq, position)
  ) as gap;
  next_seq := coalesce(seqs[cardinality(seqs)], head.through_seq) + 1;

  if cardinality(seqs) < max_rows then
    -- Everything up to the fence: what no row holds up to there was skipped.
    sealed_through := fence.through_seq;
    if sealed_through >= next_seq then
      skipped := skipped + int8multirange(int8range(next_seq, sealed_through + 1));
    end if;
  else
    sealed_through := next_seq - 1;
  end if;
  if sealed_through <= head.through_seq then
    update private.audit_seal_fence set through_seq = drawn, below_xid = own_xid,
      noted_at = clock_timestamp();
    return 0;
  end if;

  -- Each row is found again by where it was read (no index lookup); nothing else changes an
  -- unsealed row, and the seq is checked as well. The seq range keeps the plan to the rows
  -- being sealed: without it, the planner may join against the whole log.
  update public.payment_audit_logs as l
  set prev_hash = u.prev_hash, row_hash = u.row_hash
  from (
    select
      s.seq,
      s.row_ctid,
      s.row_hash,
      lag(s.row_hash, 1, head.head_hash) over (order by s.position) as prev_hash
    from unnest(seqs, ctids, hashes) with ordinality as s (seq, row_ctid, row_hash, position)
  ) as u
  where
    l.ctid = u.row_ctid and l.seq = u.seq
    and l.seq >= seqs[1] and l.seq <= seqs[cardinality(seqs)];
  get diagnostics updated = row_count;
  if updated <> cardinality(seqs) then
    raise exception 'sealing: % of % audit rows could be sealed', updated, cardinality(seqs)
    using errcode = '40001', hint = 'an audit row changed while it was being sealed; retry';
  end if;
  insert into private.audit_seals (through_seq, head_hash, sealed_rows, skipped_seqs)
  values (sealed_through, prev, cardinality(seqs), skipped);
  if sealed_through = fence.through_seq then
    update private.audit_seal_fence set through_seq = drawn, below_xid = own_xid,
      noted_at = clock_timestamp();
  end if;
  return cardinality(seqs);
end
$$;
