-- Processor webhook events, keyed by the processor's event id so that each is handled once.

create type public.webhook_event_status as enum ('received', 'processed', 'failed', 'ignored');

create table public.webhook_events (
  id text primary key check (id ~ '^evt_[A-Za-z0-9]+$'),
  processor text not null default 'stripe' check (processor = 'stripe'),
  type text not null check (char_length(type) between 1 and 100),
  payload jsonb not null check (jsonb_typeof(payload) = 'object'),
  status public.webhook_event_status not null default 'received',
  error_message text check (char_length(error_message) <= 2000),
  received_at timestamptz not null default now(),
  processed_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table public.webhook_events is
'Each processor event once (the primary key is the event id): what came, and what became of it.';

create index webhook_events_status_idx on public.webhook_events (status)
where status in ('received', 'failed');

create trigger keep_row_timestamps
before insert or update on public.webhook_events
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on public.webhook_events
for each row execute function private.refuse_card_data();
