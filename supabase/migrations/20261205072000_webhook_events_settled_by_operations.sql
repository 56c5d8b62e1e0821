-- A refused or failed webhook event can be settled by operations, in writing, once.
--
-- `payguard reconcile` lists every refused or failed event, and nothing could ever take one
-- off the list: an event the database refused for good (an account.updated for an account
-- that is not a payout account, an event of a type that moves no money with a bad object)
-- was reported on every run for ever, so that the report stopped meaning "something needs
-- doing". A refused money event opens a processor inconsistency, and resolving that (by the
-- recovery, or by an admin in writing) settles its money; the event itself stayed listed.
--
-- Now an event is settled by a resolved processor inconsistency that names it
-- (`webhook_event_id`): one that a refused money event opened, once recovered or resolved, or
-- one that public.settle_webhook_event records, resolved in the same statement, for an event
-- that opened none: an admin at aal2 writes what was done about it (10 to 2,000 characters).
-- `payguard reconcile` lists the refused or failed events that nothing settles. An event
-- Stripe delivers again and that is then applied leaves the list by itself (processed), as
-- before.

/**
 * Settle refused or failed webhook event `event_id` (an admin, aal2, with a written
 * resolution of 10 to 2,000 characters: PT403, PT422): records a processor inconsistency of
 * kind `webhook_event_refused` or `webhook_event_failed` naming the event, resolved with that
 * resolution. Refused (PT409) for an event that was applied or ignored, for one that an open
 * inconsistency names (its money is settled by recovering or resolving that one), and for one
 * already settled. PT404 for an unknown event. Returns the inconsistency. Security definer:
 * admins do not write processor_inconsistencies.
 */
create function private.settle_webhook_event(event_id text, resolution text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  event public.webhook_events;
  naming public.processor_inconsistencies;
  answer jsonb;
begin
  if nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'aal'
    is distinct from 'aal2' then
    raise exception 'settling a webhook event needs MFA (aal2)'
    using errcode = 'PT403';
  end if;
  if not private.is_written(resolution, 2000) then
    raise exception 'settling webhook event % needs a written resolution of 10 to 2000 '
    'characters', event_id
    using errcode = 'PT422';
  end if;
  select * into event from public.webhook_events as e
  where e.id = settle_webhook_event.event_id
  for update;
  if not found then
    raise exception 'no webhook event %', event_id using errcode = 'PT404';
  end if;
  if event.status::text not in ('refused', 'failed') then
    raise exception 'webhook event % was %: there is nothing to settle', event.id, event.status
    using errcode = 'PT409';
  end if;
  select * into naming from public.processor_inconsistencies as i
  where i.webhook_event_id = event.id
  order by i.resolution is null desc, i.created_at
  limit 1;
  if found and naming.resolution is null then
    raise exception 'webhook event % is named by open processor inconsistency % (%): recover '
    'or resolve that one', event.id, naming.id, naming.kind
    using errcode = 'PT409';
  elsif found then
    raise exception 'webhook event % was settled at % by processor inconsistency %',
    event.id, naming.resolved_at, naming.id
    using errcode = 'PT409';
  end if;
  insert into public.processor_inconsistencies as i (
    kind, processor_object_id, webhook_event_id, detail, resolution
  )
  values (
    'webhook_event_' || event.status::text, event.id, event.id,
    event.type || ' was ' || event.status::text
    || coalesce(' (' || event.error_code || ')', '') || ' after '
    || event.deliveries || ' deliveries',
    settle_webhook_event.resolution
  )
  returning to_jsonb(i.*) into answer;
  return answer;
end
$$;

revoke all on function private.settle_webhook_event(text, text) from public;

/** private.settle_webhook_event, with a refusal recorded and answered. */
create function public.settle_webhook_event(event_id text, resolution text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.settle_webhook_event(event_id, resolution);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'settle_webhook_event', 'webhook_events', left(event_id, 255),
    jsonb_build_object('event_id', event_id, 'resolution', resolution),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

revoke all on function public.settle_webhook_event(text, text)
from public, anon, authenticated, service_role;
grant execute on function public.settle_webhook_event(text, text) to admin;
grant execute on function private.settle_webhook_event(text, text) to admin;
