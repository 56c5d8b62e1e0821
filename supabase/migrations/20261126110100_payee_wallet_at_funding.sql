-- The payee's wallet is opened when a milestone payment is funded, not when it is released.
-- Once escrow holds money for a payee, the account it will be paid into exists: a release
-- or a split is then only transfers between accounts that are already there. The release
-- no longer writes an account (nor its audit row), and concurrent releases to a payee who
-- has no wallet yet no longer wait on each other's new account. A payee's wallet is opened
-- once; private.ledger_wallet() still opens it on first use for payments funded before this
-- migration.

/**
 * AFTER UPDATE trigger on milestone_payments: the postings of a transition that the check
 * trigger allowed, as in 20261126080800_ledger_linked_transfers.sql, and the payee's wallet
 * opened at funding.
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
