-- Linked transfers: the transfers of one event posted together.
--
-- A release moves the payee's share and the platform fee out of the same escrow; a split
-- also returns the rest. Posted one by one, each transfer locked, checked and updated the
-- escrow's ledger account and its cached balance again: two or three times the work, and as
-- many audit rows for the same balance. private.ledger_transfers() posts a list of
-- single-phase transfers at once: every row inserted in one statement, the limited accounts
-- locked, checked and updated once for the sum of their entries. Each transfer is still
-- its own balanced, immutable row; only the bookkeeping around them is shared.

/** One single-phase transfer, not yet posted: an element for private.ledger_transfers(). */
create function private.ledger_move(
  transfer_code text,
  debit_account uuid,
  credit_account uuid,
  amount bigint,
  transfer_currency char(3),
  reference_type text default null,
  reference_id uuid default null
) returns private.ledger_transfers
language plpgsql
set search_path = ''
as $$
declare
  move private.ledger_transfers;
begin
  move.id := gen_random_uuid();
  move.kind := 'single_phase';
  move.code := transfer_code;
  move.debit_account_id := debit_account;
  move.credit_account_id := credit_account;
  move.amount := amount;
  move.currency := transfer_currency;
  move.reference_type := reference_type;
  move.reference_id := reference_id;
  return move;
end
$$;

/**
 * Post `moves` (from private.ledger_move) together: all or none. Each must move a positive
 * amount between two accounts of its currency.
 */
create function private.ledger_transfers(moves private.ledger_transfers[]) returns void
language plpgsql
security definer
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
declare
  bad private.ledger_transfers;
begin
  select m.* into bad from unnest(moves) as m
  where m.amount is null or m.amount <= 0
  limit 1;
  if found then
    raise exception 'a transfer moves a positive amount, not %', bad.amount using errcode = 'PT422';
  end if;
  select m.* into bad from unnest(moves) as m
  where (
    select count(*) from private.ledger_accounts as a
    where a.id in (m.debit_account_id, m.credit_account_id) and a.currency = m.currency
  ) <> 2
  limit 1;
  if found then
    raise exception 'accounts % and % must both exist and hold %',
    bad.debit_account_id, bad.credit_account_id, bad.currency
    using errcode = 'PT422';
  end if;
  insert into private.ledger_transfers (
    id, kind, code, debit_account_id, credit_account_id, amount, currency,
    reference_type, reference_id
  )
  select
    m.id, 'single_phase', m.code, m.debit_account_id, m.credit_account_id, m.amount,
    m.currency, m.reference_type, m.reference_id
  from unnest(moves) as m;
  perform private.record_entries(array(
    select row(null, m.id, side.account_id, side.side, 'posted', m.amount, null)
      ::private.ledger_entries
    from unnest(moves) as m
    cross join lateral (
      values (m.debit_account_id, 'debit'), (m.credit_account_id, 'credit')
    ) as side (account_id, side)
  ));
end
$$;

revoke all on function private.ledger_move(text, uuid, uuid, bigint, char, text, uuid)
from public;
revoke all on function private.ledger_transfers(private.ledger_transfers[]) from public;

/**
 * AFTER UPDATE trigger on milestone_payments: the postings of a transition that the check
 * trigger allowed. Security definer: no API role may touch the ledger itself.
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
  -- Settled without resolve_dispute (escrow_service updating the payment itself): the
  -- dispute is closed with the same outcome, so no dispute stays open over settled money.
  if old.status = 'disputed' and new.status in ('released', 'refunded') then
    update public.disputes as d
    set status = 'resolved',
      outcome = case new.status when 'released' then 'release' else 'refund' end
        ::public.dispute_outcome,
      resolution = coalesce(d.resolution, 'Settled with the payment')
    where d.milestone_payment_id = new.id and d.status = 'open';
  end if;
  if new.status = 'funded' then
    perform private.ledger_transfer(
      'milestone_funding', private.ledger_system_account('processor_clearing', new.currency),
      escrow, new.amount_minor, new.currency, false, 'milestone_payment', new.id
    );
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
