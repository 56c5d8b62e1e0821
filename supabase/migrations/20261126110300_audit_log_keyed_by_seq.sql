-- The audit log's primary key is seq: the chain's order, by which the sealer, verify and
-- anchors find rows. The source document's id stays, a random UUID per row, but it is no
-- longer indexed: no query looks a row up by it, and a b-tree of random keys cost every
-- audited row an insert at a random place (about 6 µs a row, ten rows per release).
-- Its uniqueness now comes from how it is made: every row gets a fresh gen_random_uuid(),
-- those of the capture triggers by the column's default, any other insert's from the stamp
-- trigger below, whatever id it brought.

alter table public.payment_audit_logs drop constraint payment_audit_logs_pkey;
alter table public.payment_audit_logs drop constraint payment_audit_logs_seq_key;
alter table public.payment_audit_logs add constraint payment_audit_logs_pkey primary key (seq);

comment on column public.payment_audit_logs.id is
'A random UUID of the row''s own (gen_random_uuid()), never one an insert brings.';

/**
 * BEFORE INSERT on payment_audit_logs, for each row not written by a capture trigger: as in
 * 20261126080000_audit_capture.sql, and the row's id is drawn here too.
 */
create or replace function private.stamp_audit_log_row() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform pg_catalog.pg_current_xact_id();
  new.id := gen_random_uuid();
  new.seq := nextval('private.audit_log_seq');
  new.timestamp := now();
  new.prev_hash := null;
  new.row_hash := null;
  if private.holds_card_number(concat_ws(' ', new.user_agent, new.ip_address, new.error_message))
    then
    new.user_agent := private.without_card_numbers(new.user_agent);
    new.ip_address := private.without_card_numbers(new.ip_address);
    new.error_message := private.without_card_numbers(new.error_message);
  end if;
  new.metadata := private.without_card_data(new.metadata);
  if not new.success then
    new.new_values := private.without_card_data(new.new_values);
  end if;
  return new;
end
$$;
