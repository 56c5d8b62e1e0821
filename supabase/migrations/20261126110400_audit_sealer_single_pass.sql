-- The sealer reads the rows it seals in one pass. It used to gather their seqs, places and
-- canonical bytes into three arrays, each an ordered aggregate that sorted every row's
-- bytes again, and only then hashed them; it now hashes each row as the query hands it
-- over, in seq order, from the primary key. Scalars are quoted with to_json(), which writes
-- the same JSON text as jsonb_build_array() without building a jsonb value first. The chain,
-- the rows' canonical bytes and everything else the sealer does are as in
-- 20261126100000_audit_capture_cost.sql.

/**
 * Seal what can be sealed: at most `max_rows` rows per call. Returns how many rows were
 * sealed. Concurrent calls do not collide: one seals, the others return 0. It must run in
 * a transaction of its own (autocommit), since its transaction id is part of the fence.
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
  pending record;
  skipped int8multirange;
  seqs bigint [] := '{}'::bigint [];
  ctids tid [] := '{}'::tid [];
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
  -- One pass over the rows in seq order: each row's canonical bytes, hashed onto the chain
  -- as it is read. Gaps and previous hashes are worked out set-based afterwards.
  prev := head.head_hash;
  for pending in
    select
      l.seq,
      l.ctid as row_ctid,
      -- private.audit_row_canonical(l), the same text written out: a function call per row
      -- (with its search path set) cost more than the serialization itself. to_json() of a
      -- scalar is the JSON text that jsonb_build_array() gives it.
      convert_to(concat(
        '[', l.seq, ', ', to_json(l.id), ', ', extract(epoch from l.timestamp), ', ',
        to_json(l.operation), ', ', to_json(l.entity_type), ', ', to_json(l.entity_id),
        ', ', coalesce(to_json(l.user_id)::text, 'null'), ', ', to_json(l.user_role), ', ',
        coalesce(to_json(l.ip_address)::text, 'null'), ', ',
        coalesce(to_json(l.user_agent)::text, 'null'), ', ',
        coalesce(l.old_values::text, 'null'), ', ', coalesce(l.new_values::text, 'null'), ', ',
        case when l.success then 'true' else 'false' end, ', ',
        coalesce(to_json(l.error_message)::text, 'null'), ', ',
        coalesce(l.metadata::text, 'null'), ']'
      ), 'UTF8') as body
    from public.payment_audit_logs as l
    where l.seq > head.through_seq and l.seq <= fence.through_seq
    order by l.seq
    limit max_rows
  loop
    prev := sha256(prev || pending.body);
    seqs := seqs || pending.seq;
    ctids := ctids || pending.row_ctid;
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
