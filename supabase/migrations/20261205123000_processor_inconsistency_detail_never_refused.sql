-- A processor inconsistency is recorded whatever its detail says: a detail the card-data guard
-- refuses (an error's text that joins digits to an id, which then reads as a card number) is
-- recorded as "[removed: it held card data]" instead of losing the report.
/**
 * Record an inconsistency found at the border (payment_service): `kind` (a lower-case word,
 * charge_refused for a charge the database refused, charge_unrecorded for one it could not be
 * reached to record, ...), the processor's object, the milestone payment, the amount and a
 * detail for operations (no secret, no card data). Recorded once per kind and object: the same
 * again returns the first record. `webhook_event_id` names the event that found it, if one did.
 * Returns the record. A detail the card-data guard refuses (an error's text may join digits to
 * an id, which then reads as a card number) is recorded as "[removed: it held card data]": the
 * report itself is never lost to its wording.
 */
create or replace function public.record_processor_inconsistency(
  kind text,
  processor_object_id text,
  milestone_payment_id uuid,
  amount_minor bigint,
  currency char(3),
  detail text,
  webhook_event_id text default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  answer jsonb;
  kept_detail text := left(record_processor_inconsistency.detail, 2000);
begin
  for attempt in 1 .. 2 loop
    begin
      insert into public.processor_inconsistencies as i (
        kind, processor_object_id, milestone_payment_id, webhook_event_id, amount_minor,
        currency, detail
      )
      values (
        record_processor_inconsistency.kind, record_processor_inconsistency.processor_object_id,
        record_processor_inconsistency.milestone_payment_id,
        record_processor_inconsistency.webhook_event_id,
        record_processor_inconsistency.amount_minor,
        upper(record_processor_inconsistency.currency), kept_detail
      )
      on conflict on constraint processor_inconsistencies_kind_processor_object_id_key do nothing
      returning to_jsonb(i.*) into answer;
      exit;
    exception
      -- the card-data guard: once, for the detail only (another column refused is raised)
      when sqlstate 'PT422' then
        if attempt = 2 or kept_detail is null then
          raise;
        end if;
        kept_detail := '[removed: it held card data]';
    end;
  end loop;
  if answer is null then
    select to_jsonb(i.*) into answer from public.processor_inconsistencies as i
    where i.kind = record_processor_inconsistency.kind
      and i.processor_object_id = record_processor_inconsistency.processor_object_id;
  end if;
  return answer;
end
$$;
