-- Each user's customer at the processor, recorded once. The payment-methods Edge Function
-- creates the customer on a user's first saved card and records it here; every payment method
-- of that user must then name that customer, so no `cus_` of anyone's choosing is stored.

/**
 * A user's customer at the processor (Stripe's `cus_…`), set once: it is never updated, and
 * payment_service records it on the user's behalf. The user reads their own.
 */
create table public.processor_customers (
  user_id uuid primary key references public.users (id) on delete cascade,
  processor text not null default 'stripe' check (processor = 'stripe'),
  processor_customer_id text not null unique
  check (processor_customer_id ~ '^cus_[A-Za-z0-9]{6,}$'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create trigger keep_row_timestamps
before insert or update on public.processor_customers
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on public.processor_customers
for each row execute function private.refuse_card_data();
select private.renew_card_data_guard('public.processor_customers');

-- The customer id is a processor token, kept out of the audit trail like payment methods' ones.
create or replace function private.audit_redacted_columns(table_name text) returns text[]
language plpgsql
immutable
set search_path = ''
as $$
begin
  return case table_name
    when 'payment_methods' then array['processor_payment_method_id', 'processor_customer_id']
    when 'payout_methods' then array['processor_account_id', 'processor_external_account_id']
    when 'webhook_events' then array['payload']
    when 'processor_customers' then array['processor_customer_id']
    else array[]::text []
  end;
end
$$;

create trigger audit_trail
after insert or update or delete on public.processor_customers
for each row execute function private.capture_audit_row('user_id');
select private.renew_audit_trail('public.processor_customers');

create trigger refuse_unaudited_truncate
before truncate on public.processor_customers
for each statement execute function private.refuse_unaudited_truncate();

/** A recorded customer never changes: a user keeps the customer their cards are saved under. */
create function private.keep_processor_customer() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception 'the processor customer of user % is recorded once and never changes',
  old.user_id
  using errcode = 'PT409';
end
$$;

revoke all on function private.keep_processor_customer() from public;

create trigger keep_processor_customer
before update on public.processor_customers
for each row execute function private.keep_processor_customer();

/**
 * A payment method names its owner's recorded customer. The first payment method of a user
 * with no recorded customer records it (the function that saves it has just created it); a
 * customer recorded for another user is refused.
 */
create function private.check_payment_method_customer() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  recorded text;
  holder uuid;
begin
  select c.processor_customer_id into recorded
  from public.processor_customers as c where c.user_id = new.user_id;
  if recorded is null then
    select c.user_id into holder
    from public.processor_customers as c where c.processor_customer_id = new.processor_customer_id;
    if holder is not null then
      raise exception 'payment method %: customer % is another user''s',
      new.processor_payment_method_id, new.processor_customer_id
      using errcode = 'PT409';
    end if;
    insert into public.processor_customers (user_id, processor, processor_customer_id)
    values (new.user_id, new.processor, new.processor_customer_id);
  elsif recorded <> new.processor_customer_id then
    raise exception 'payment method %: customer % is not the recorded customer of its owner',
    new.processor_payment_method_id, new.processor_customer_id
    using errcode = 'PT409',
    hint = 'a payment method is saved under its owner''s customer at the processor';
  end if;
  return new;
end
$$;

revoke all on function private.check_payment_method_customer() from public;

create trigger tie_payment_method_to_customer
before insert or update of user_id, processor_customer_id on public.payment_methods
for each row execute function private.check_payment_method_customer();
