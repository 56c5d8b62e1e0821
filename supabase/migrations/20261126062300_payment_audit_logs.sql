-- The audit trail of payment operations, with the source document's columns. The triggers
-- that write it, and its tamper evidence, come later; here it is created append-only.

create table public.payment_audit_logs (
  id uuid primary key default gen_random_uuid(),
  timestamp timestamptz not null default now(),
  operation varchar(50) not null,
  entity_type varchar(50) not null,
  entity_id uuid not null,
  user_id uuid not null,
  user_role varchar(50) not null,
  ip_address varchar(50),
  user_agent text,
  old_values jsonb,
  new_values jsonb,
  success boolean not null,
  error_message text,
  metadata jsonb
);

comment on table public.payment_audit_logs is
'Who did what to which payment record, when, from where, and with what result. Append-only.';

create index payment_audit_logs_entity_idx
on public.payment_audit_logs (entity_type, entity_id);
create index payment_audit_logs_user_id_idx on public.payment_audit_logs (user_id);
create index payment_audit_logs_timestamp_idx on public.payment_audit_logs (timestamp);

create trigger refuse_card_data
before insert or update on public.payment_audit_logs
for each row execute function private.refuse_card_data();
