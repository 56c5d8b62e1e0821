-- A dispute is settled once, with a written reason, by exactly the decision made, and then
-- never changes.
--
-- Before this migration an admin could edit a settled dispute (its share, its outcome, its
-- status back to open) so that it no longer matched the ledger; resolving a dispute by a
-- PATCH recorded a decision without moving any money; a split paid the share of whichever
-- resolved split dispute of the payment was found (an earlier one's stale share, while the
-- new one was recorded); and staff could settle with an empty reason. Now, for every role
-- and path (resolve_dispute, a PATCH of the dispute, a PATCH of the payment, the tables'
-- owner):
--   * a closed dispute (resolved or withdrawn) never changes and is never deleted (PT409).
--     A correction of settled money is a correcting ledger transfer, never an edit of the
--     decision; a settled payment cannot be disputed again (its transitions end there);
--   * closing a dispute needs a written resolution of 10 to 5000 characters once trimmed
--     (PT422); it is kept in the row, and so in the audit row of the update. A disputed
--     payment settled directly (escrow_service or an admin updating the payment) closes its
--     open dispute with that dispute's written resolution, so the resolution is written on
--     the dispute first;
--   * resolving a dispute settles its payment in the same statement, as the outcome says,
--     through the payment's own transition rules (who, no party, a frozen escrow): the
--     record and the ledger cannot disagree;
--   * a split posts the share of the dispute being resolved, named for that statement only
--     in the setting payguard.settling_dispute; a payment is split by nothing else (a PATCH
--     of the payment to split is refused, PT422);
--   * who may act comes first: a party to the payment (an admin who is its payer or payee)
--     is refused (PT403) before anything about the dispute's state is said.

/**
 * BEFORE INSERT OR UPDATE trigger on disputes. A dispute opens undecided. An update is
 * checked in the order who (never a party to the payment), whether (a closed dispute never
 * changes), what (no share while undecided; a written resolution to close it); who closed it
 * and when are the database's to record. Security definer, because staff roles such as
 * admin may not read the `auth` schema that auth.uid() lives in.
 */
create or replace function private.record_dispute_resolution() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    new.status := 'open';
    new.outcome := null;
    new.payee_share_minor := null;
    new.resolution := null;
    new.resolved_by := null;
    new.resolved_at := null;
    return new;
  end if;
  if (select auth.uid()) in (
    select unnest(array[mp.payer_id, mp.payee_id]) from public.milestone_payments as mp
    where mp.id = old.milestone_payment_id
  ) then
    raise exception 'a party to milestone payment % cannot resolve its dispute',
    old.milestone_payment_id
    using errcode = 'PT403', hint = 'another admin decides';
  end if;
  if (new.id, new.milestone_payment_id, new.opened_by, new.reason)
    is distinct from (old.id, old.milestone_payment_id, old.opened_by, old.reason) then
    raise exception 'dispute %: its id, its payment, who opened it and why never change', old.id
    using errcode = 'PT409';
  end if;
  if old.status <> 'open' then
    raise exception 'dispute % is %: a closed dispute never changes', old.id, old.status
    using errcode = 'PT409',
    hint = 'its decision stands: a correction of the money is a correcting ledger transfer';
  end if;
  if new.status <> 'resolved' and new.payee_share_minor is not null then
    raise exception 'dispute %: the payee''s share is recorded only by resolving it as a split',
    old.id
    using errcode = 'PT422';
  end if;
  if new.status = 'open' then
    new.resolved_by := null;
    new.resolved_at := null;
    return new;
  end if;
  if new.resolution is null
    or char_length(private.trimmed(new.resolution)) not between 10 and 5000 then
    raise exception 'closing dispute % needs a written resolution of 10 to 5000 characters',
    old.id
    using errcode = 'PT422',
    hint = 'say why: the resolution is kept with the decision and in the audit trail (to settle '
    || 'its payment directly, write it on the dispute first)';
  end if;
  new.resolved_by := (select auth.uid());
  new.resolved_at := now();
  return new;
end
$$;

alter table public.disputes
add constraint disputes_closed_with_resolution_check
check (
  status = 'open'
  or (resolution is not null and char_length(private.trimmed(resolution)) between 10 and 5000)
) not valid;

/**
 * BEFORE DELETE trigger on disputes: a closed dispute is a settled record and is never
 * deleted, by any role (no API role may delete disputes at all; this holds the tables' owner
 * too).
 */
create function private.keep_closed_disputes() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.status <> 'open' then
    raise exception 'dispute % is %: a closed dispute is never deleted', old.id, old.status
    using errcode = 'PT409';
  end if;
  return old;
end
$$;

revoke all on function private.keep_closed_disputes() from public;

create trigger keep_closed_disputes
before delete on public.disputes
for each row execute function private.keep_closed_disputes();

/**
 * AFTER UPDATE trigger on disputes, when one is resolved: its payment is settled in the same
 * statement, as the outcome says. Security invoker, so that the payment moves as the role
 * that resolved the dispute, under the payment's own rules. For the statement's length,
 * payguard.settling_dispute names this dispute: a split posts exactly its share. A payment
 * already settled with the same outcome (settled directly, which closes its dispute) is
 * left as it is; any other state refuses the resolution.
 */
create function private.settle_disputed_milestone_payment() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  settled public.milestone_payment_status := case new.outcome
    when 'release' then 'released' when 'refund' then 'refunded' else 'split'
  end::public.milestone_payment_status;
  moved integer;
  payment_status public.milestone_payment_status;
begin
  perform set_config('payguard.settling_dispute', new.id::text, true);
  update public.milestone_payments as mp set status = settled
  where mp.id = new.milestone_payment_id and mp.status = 'disputed';
  get diagnostics moved = row_count;
  perform set_config('payguard.settling_dispute', '', true);
  if moved = 0 then
    select mp.status into payment_status from public.milestone_payments as mp
    where mp.id = new.milestone_payment_id;
    if payment_status is distinct from settled then
      raise exception 'dispute % cannot be resolved: milestone payment % is %, not in dispute',
      new.id, new.milestone_payment_id, payment_status
      using errcode = 'PT409';
    end if;
  end if;
  return null;
end
$$;

revoke all on function private.settle_disputed_milestone_payment() from public;

create trigger settle_disputed_milestone_payment
after update of status on public.disputes
for each row when (old.status is distinct from new.status and new.status = 'resolved')
execute function private.settle_disputed_milestone_payment();

/**
 * The payee's share of a split of `payment`: that of the dispute being resolved in this
 * statement (payguard.settling_dispute), when it was resolved, in this transaction, as a
 * split of this payment with a share below its amount; otherwise null. Never another
 * dispute's: a setting that names an earlier dispute finds nothing.
 */
create or replace function private.split_share(payment uuid) returns bigint
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select d.payee_share_minor
    from public.disputes as d
    join public.milestone_payments as mp on mp.id = d.milestone_payment_id
    where d.id = nullif(current_setting('payguard.settling_dispute', true), '')::uuid
      and d.milestone_payment_id = payment and d.status = 'resolved' and d.outcome = 'split'
      and d.resolved_at = now() and d.payee_share_minor < mp.amount_minor
  );
end
$$;

/**
 * AFTER UPDATE trigger on milestone_payments: the postings of a transition that the check
 * trigger allowed, as in 20261126110100_payee_wallet_at_funding.sql. A disputed payment
 * settled directly closes its open dispute with the dispute's own written resolution (the
 * dispute's trigger refuses it without one); a split posts the share of the dispute being
 * resolved, and nothing else.
 */
create or replace function private.post_milestone_payment_transition() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  escrow uuid := private.ledger_escrow_account(new.escrow_account_id);
  fee bigint;
  share bigint;
  moves private.ledger_transfers[] := '{}'::private.ledger_transfers[];
begin
  -- Settled without resolving the dispute (escrow_service or an admin updating the payment
  -- itself): the dispute is closed with the same outcome, so no dispute stays open over
  -- settled money.
  if old.status = 'disputed' and new.status in ('released', 'refunded') then
    update public.disputes as d
    set status = 'resolved',
      outcome = case new.status when 'released' then 'release' else 'refund' end
        ::public.dispute_outcome
    where d.milestone_payment_id = new.id and d.status = 'open';
  end if;
  if new.status = 'funded' then
    perform private.ledger_transfer(
      'milestone_funding', private.ledger_system_account('processor_clearing', new.currency),
      escrow, new.amount_minor, new.currency, false, 'milestone_payment', new.id
    );
    perform private.ledger_wallet(new.payee_id, new.currency);
  elsif new.status = 'released' then
    fee := private.platform_fee(new.amount_minor, new.currency);
    if new.amount_minor > fee then
      moves := moves || private.ledger_move(
        'milestone_release', escrow, private.ledger_wallet(new.payee_id, new.currency),
        new.amount_minor - fee, new.currency, 'milestone_payment', new.id
      );
    end if;
    if fee > 0 then
      moves := moves || private.ledger_move(
        'platform_fee', escrow, private.ledger_system_account('platform_fees', new.currency),
        fee, new.currency, 'milestone_payment', new.id
      );
    end if;
    perform private.ledger_transfers(moves);
  elsif new.status = 'refunded' then
    perform private.ledger_transfer(
      'milestone_refund', escrow, private.ledger_system_account('processor_clearing', new.currency),
      new.amount_minor, new.currency, false, 'milestone_payment', new.id
    );
  elsif new.status = 'split' then
    share := private.split_share(new.id);
    if share is null then
      raise exception 'milestone payment % is split only by resolving its dispute with the '
      'payee''s share', new.id
      using errcode = 'PT422';
    end if;
    fee := private.platform_fee(share, new.currency);
    if share > fee then
      moves := moves || private.ledger_move(
        'milestone_release', escrow, private.ledger_wallet(new.payee_id, new.currency),
        share - fee, new.currency, 'milestone_payment', new.id
      );
    end if;
    if fee > 0 then
      moves := moves || private.ledger_move(
        'platform_fee', escrow, private.ledger_system_account('platform_fees', new.currency),
        fee, new.currency, 'milestone_payment', new.id
      );
    end if;
    moves := moves || private.ledger_move(
      'milestone_refund', escrow, private.ledger_system_account('processor_clearing', new.currency),
      new.amount_minor - share, new.currency, 'milestone_payment', new.id
    );
    perform private.ledger_transfers(moves);
  end if;
  return null;
end
$$;

/**
 * Resolve a dispute: record the decision, which settles its payment in the same statement
 * (settle_disputed_milestone_payment). The same key with the same parameters replays the
 * first answer; a dispute already closed is refused by its trigger (PT409).
 */
create or replace function private.resolve_dispute(
  dispute_id uuid,
  outcome public.dispute_outcome,
  resolution text,
  idempotency_key text,
  payee_share_minor bigint default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  parameters jsonb := jsonb_build_object(
    'dispute_id', dispute_id, 'outcome', outcome, 'resolution', resolution,
    'payee_share_minor', payee_share_minor
  );
  answer jsonb := private.idempotency_replay('resolve_dispute', idempotency_key, parameters);
begin
  if answer is not null then
    return answer;
  end if;
  update public.disputes as d
  set status = 'resolved', outcome = resolve_dispute.outcome,
    payee_share_minor = resolve_dispute.payee_share_minor,
    resolution = resolve_dispute.resolution
  where d.id = resolve_dispute.dispute_id
  returning to_jsonb(d.*) into answer;
  if answer is null then
    raise exception 'no dispute % that you may resolve', dispute_id using errcode = 'PT404';
  end if;
  return private.idempotency_store('resolve_dispute', idempotency_key, parameters, answer);
end
$$;
