-- Escrow is not paid to the payee while the processor may have taken the money back.
--
-- A partial refund of a held payment is refused (refund_refused, an open inconsistency), and a
-- chargeback or its decision that the database refused is recorded the same way
-- (chargeback_refused, chargeback_closing_refused); but the payer could still release the
-- payment, and staff could still release or split it, so the payee was paid money the charge no
-- longer held. Now every move of a payment's money out of escrow to the payee (released, or
-- split) is refused (PT409) while such an inconsistency is open and names the payment, or its
-- PaymentIntent (as the object it is about, or through the event that opened it: a chargeback
-- that came before the payment was funded names no payment). A refund to the payer is not held.
-- Once operations settle the inconsistency (resolve_processor_inconsistency), the payment
-- moves again.

/**
 * The open inconsistency (refund_refused, chargeback_refused, chargeback_closing_refused) that
 * says the processor may have taken back money of milestone payment `payment`, funded by
 * PaymentIntent `payment_intent_id`; null when there is none.
 */
create function private.processor_took_money_back(payment uuid, payment_intent_id text)
returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select i.id from public.processor_inconsistencies as i
  where i.resolution is null
    and i.kind in ('refund_refused', 'chargeback_refused', 'chargeback_closing_refused')
    and (
      i.milestone_payment_id = payment
      or (payment_intent_id is not null and (
        i.processor_object_id = payment_intent_id
        or exists (
          select from public.webhook_events as e
          where e.id = i.webhook_event_id
            and e.payload -> 'data' -> 'object' ->> 'payment_intent' = payment_intent_id
        )
      ))
    )
  order by i.created_at, i.id
  limit 1
$$;

revoke all on function private.processor_took_money_back(uuid, text) from public;
grant execute on function private.processor_took_money_back(uuid, text)
to authenticated, payment_service, escrow_service, admin;

/**
 * BEFORE UPDATE trigger on milestone_payments, when its money would leave escrow for the payee
 * (released, split): refused (PT409) while the processor may have taken that money back.
 * Named to run after check_milestone_payment_transition, so that who may move the payment is
 * answered first.
 */
create function private.hold_escrow_while_processor_took_money_back() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  inconsistency uuid := private.processor_took_money_back(
    old.id, old.processor_payment_intent_id
  );
begin
  if inconsistency is not null then
    raise exception 'milestone payment % cannot be paid to its payee: the processor may have '
    'taken its money back (processor inconsistency %)', old.id, inconsistency
    using errcode = 'PT409',
    hint = 'operations settle the inconsistency first (resolve_processor_inconsistency)';
  end if;
  return new;
end
$$;

revoke all on function private.hold_escrow_while_processor_took_money_back() from public;

create trigger check_milestone_payment_unrefunded
before update of status on public.milestone_payments
for each row
when (old.status is distinct from new.status and new.status in ('released', 'split'))
execute function private.hold_escrow_while_processor_took_money_back();
