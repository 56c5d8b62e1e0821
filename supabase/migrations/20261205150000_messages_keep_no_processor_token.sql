-- Refusals and failures keep no processor token in their words: a Stripe or database message
-- that names a `pm_`, `cus_`, `acct_`, `ba_` or `card_` id keeps its kind alone, in every
-- record_* message (private.recordable_message) and in webhook_events.error_message, which the
-- payer or staff read.

set local check_function_bodies = off;

create or replace function private.without_processor_ids(message text) returns text
language sql
immutable
set search_path = ''
as $$
  select regexp_replace(message, '\m(pm|cus|acct|ba|card)_[A-Za-z0-9]{6,}', '[\1_…]', 'g')
$$;

grant execute on function private.without_processor_ids(text) to payment_service;
grant execute on function private.without_processor_ids(text) to service_role;

create or replace function private.recordable_message(message text, max_chars integer)
returns text
language sql
immutable
security definer
set search_path = ''
as $$
  select case
    when private.holds_card_number(left(private.without_processor_ids(message), max_chars))
      then '[removed: it held card data]'
    else left(private.without_processor_ids(message), max_chars)
  end
$$;

create or replace function private.scrub_webhook_event_error() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.error_message := private.without_processor_ids(new.error_message);
  return new;
end
$$;

create trigger scrub_error_message
before insert or update of error_message on public.webhook_events
for each row execute function private.scrub_webhook_event_error();

-- The messages already kept lose their tokens the same way.
update public.webhook_events set error_message = error_message
where error_message ~ '\m(pm|cus|acct|ba|card)_[A-Za-z0-9]{6,}';
