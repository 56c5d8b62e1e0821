-- A chargeback is a dispute too. When a payer disputes a charge with their card issuer, the
-- processor's charge.dispute.created event opens a dispute over the milestone payment (opened
-- by the payer, naming the processor's dispute id), and charge.dispute.closed decides it:
-- the issuer, not staff, decides a chargeback, so only payment_service (applying the
-- processor's event) opens or closes one.

alter table public.disputes
add column processor_dispute_id text unique
check (processor_dispute_id ~ '^(dp|du)_[A-Za-z0-9]+$');

select private.renew_card_data_guard('public.disputes');
select private.renew_audit_trail('public.disputes');

/**
 * A chargeback's dispute is opened and closed by payment_service alone (the card issuer
 * decides it, and the processor reports the decision); a party's dispute is never one
 * (its processor dispute id is set only when payment_service opens it).
 */
create function private.keep_chargebacks_to_the_processor() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    if new.processor_dispute_id is not null and current_user <> 'payment_service' then
      raise exception 'a chargeback''s dispute is opened only from the processor''s event'
      using errcode = 'PT403';
    end if;
    return new;
  end if;
  if new.processor_dispute_id is distinct from old.processor_dispute_id then
    raise exception 'dispute %: its processor dispute id never changes', old.id
    using errcode = 'PT409';
  end if;
  if old.processor_dispute_id is not null and new.status is distinct from old.status
    and current_user <> 'payment_service' then
    raise exception 'dispute % is chargeback %: the card issuer decides it, and the processor '
    'reports the decision', old.id, old.processor_dispute_id
    using errcode = 'PT403';
  end if;
  return new;
end
$$;

revoke all on function private.keep_chargebacks_to_the_processor() from public;

create trigger keep_chargebacks_to_the_processor
before insert or update on public.disputes
for each row execute function private.keep_chargebacks_to_the_processor();

/**
 * Opening a party's dispute disputes its payment, as the party. A chargeback's dispute does
 * not: payment_service disputes the payment itself, in the same transaction, so that the
 * transition trigger sees payment_service as the actor.
 */
create or replace function private.dispute_milestone_payment() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.processor_dispute_id is null then
    update public.milestone_payments
    set status = 'disputed'
    where id = new.milestone_payment_id;
  end if;
  return new;
end
$$;

-- Closing a chargeback's dispute checks its written resolution as payment_service.
grant execute on function private.trimmed(text) to payment_service;
