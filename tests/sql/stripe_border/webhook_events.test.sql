-- public.webhook_events: only the payment backend touches them. payment_service and
-- service_role read, insert and update; admin reads; app users, anon, auditor and
-- escrow_service have nothing; no one deletes.
begin;
select plan(34);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres (the tables' owner, which bypasses RLS)
select tests.create_supabase_user('alice');
select tests.create_supabase_user('adm');
select tests.create_supabase_user('aud');
update public.users set role = 'admin' where id = tests.get_supabase_uid('adm');
update public.users set role = 'auditor' where id = tests.get_supabase_uid('aud');

insert into public.webhook_events (id, type, payload)
values
  ('evt_1A2b3C', 'payment_intent.succeeded', '{"object": "event", "data": {"object": {"id": "pi_1A2b3C"}}}'),
  ('evt_2A2b3C', 'payout.paid', '{"object": "event"}');

-- as an anonymous request: no privilege at all
select tests.clear_authentication();
select throws_ok(
  'select count(*) from public.webhook_events',
  '42501', 'permission denied for table webhook_events',
  'anon cannot read webhook events'
);
select throws_ok(
  $$insert into public.webhook_events (id, type, payload) values ('evt_9Anon1', 'charge.succeeded', '{}')$$,
  '42501', 'permission denied for table webhook_events',
  'anon cannot forge a webhook event'
);
select throws_ok(
  $$update public.webhook_events set status = 'processed' where id = 'evt_1A2b3C'$$,
  '42501', 'permission denied for table webhook_events',
  'anon cannot update a webhook event'
);
select throws_ok(
  $$delete from public.webhook_events where id = 'evt_1A2b3C'$$,
  '42501', 'permission denied for table webhook_events',
  'anon cannot delete a webhook event'
);

-- as a signed-in user at aal1 (no row has an owner: every user is "other")
select tests.authenticate_as('alice');
select throws_ok(
  'select count(*) from public.webhook_events',
  '42501', 'permission denied for table webhook_events',
  'a user at aal1 cannot read webhook events'
);
select throws_ok(
  $$insert into public.webhook_events (id, type, payload) values ('evt_9User1', 'charge.succeeded', '{}')$$,
  '42501', 'permission denied for table webhook_events',
  'a user at aal1 cannot forge a webhook event'
);
select throws_ok(
  $$update public.webhook_events set status = 'ignored' where id = 'evt_1A2b3C'$$,
  '42501', 'permission denied for table webhook_events',
  'a user at aal1 cannot update a webhook event'
);
select throws_ok(
  $$delete from public.webhook_events where id = 'evt_1A2b3C'$$,
  '42501', 'permission denied for table webhook_events',
  'a user at aal1 cannot delete a webhook event'
);

-- as a signed-in user at aal2: MFA adds nothing here
select tests.authenticate_as('alice', aal => 'aal2');
select throws_ok(
  'select count(*) from public.webhook_events',
  '42501', 'permission denied for table webhook_events',
  'a user at aal2 cannot read webhook events'
);
select throws_ok(
  $$insert into public.webhook_events (id, type, payload) values ('evt_9User2', 'charge.succeeded', '{}')$$,
  '42501', 'permission denied for table webhook_events',
  'a user at aal2 cannot forge a webhook event'
);
select throws_ok(
  $$update public.webhook_events set status = 'ignored' where id = 'evt_1A2b3C'$$,
  '42501', 'permission denied for table webhook_events',
  'a user at aal2 cannot update a webhook event'
);
select throws_ok(
  $$delete from public.webhook_events where id = 'evt_1A2b3C'$$,
  '42501', 'permission denied for table webhook_events',
  'a user at aal2 cannot delete a webhook event'
);

-- as admin (a staff user whose JWT role is admin): reads only
reset role;
select tests.authenticate_as('adm', aal => 'aal2', role_name => 'admin');
select results_eq(
  'select id from public.webhook_events order by id',
  $$values ('evt_1A2b3C'::text), ('evt_2A2b3C'::text)$$,
  'admin reads every webhook event'
);
select throws_ok(
  $$insert into public.webhook_events (id, type, payload) values ('evt_9Admin1', 'charge.succeeded', '{}')$$,
  '42501', 'permission denied for table webhook_events',
  'admin cannot insert a webhook event'
);
select throws_ok(
  $$update public.webhook_events set status = 'ignored' where id = 'evt_1A2b3C'$$,
  '42501', 'permission denied for table webhook_events',
  'admin cannot update a webhook event'
);
select throws_ok(
  $$delete from public.webhook_events where id = 'evt_1A2b3C'$$,
  '42501', 'permission denied for table webhook_events',
  'admin cannot delete a webhook event'
);

-- as auditor (the database role): no privilege at all
reset role;
select tests.authenticate_as('aud', role_name => 'auditor');
select throws_ok(
  'select count(*) from public.webhook_events',
  '42501', 'permission denied for table webhook_events',
  'auditor cannot read webhook events'
);
select throws_ok(
  $$insert into public.webhook_events (id, type, payload) values ('evt_9Audit1', 'charge.succeeded', '{}')$$,
  '42501', 'permission denied for table webhook_events',
  'auditor cannot insert a webhook event'
);
select throws_ok(
  $$update public.webhook_events set status = 'ignored' where id = 'evt_1A2b3C'$$,
  '42501', 'permission denied for table webhook_events',
  'auditor cannot update a webhook event'
);
select throws_ok(
  $$delete from public.webhook_events where id = 'evt_1A2b3C'$$,
  '42501', 'permission denied for table webhook_events',
  'auditor cannot delete a webhook event'
);

-- as payment_service: reads, records and marks events, deletes none
reset role;
select tests.authenticate_as_service('payment_service');
select results_eq(
  'select id from public.webhook_events order by id',
  $$values ('evt_1A2b3C'::text), ('evt_2A2b3C'::text)$$,
  'payment_service reads every webhook event'
);
select lives_ok(
  $$insert into public.webhook_events (id, type, payload)
    values ('evt_3A2b3C', 'charge.refunded', '{"object": "event", "data": {"object": {"id": "ch_1A2b3C"}}}')$$,
  'payment_service records a new webhook event'
);
select throws_ok(
  $$insert into public.webhook_events (id, type, payload) values ('evt_3A2b3C', 'charge.refunded', '{}')$$,
  '23505', 'duplicate key value violates unique constraint "webhook_events_pkey"',
  'payment_service cannot record the same event twice: each is handled once'
);
select results_eq(
  $$with changed as (
      update public.webhook_events set status = 'processed', processed_at = now()
      where id = 'evt_1A2b3C' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'payment_service marks a webhook event processed'
);
select throws_ok(
  $$delete from public.webhook_events where id = 'evt_1A2b3C'$$,
  '42501', 'permission denied for table webhook_events',
  'payment_service cannot delete a webhook event'
);

-- as escrow_service: no privilege at all
reset role;
select tests.authenticate_as_service('escrow_service');
select throws_ok(
  'select count(*) from public.webhook_events',
  '42501', 'permission denied for table webhook_events',
  'escrow_service cannot read webhook events'
);
select throws_ok(
  $$insert into public.webhook_events (id, type, payload) values ('evt_9Escrow1', 'charge.succeeded', '{}')$$,
  '42501', 'permission denied for table webhook_events',
  'escrow_service cannot insert a webhook event'
);
select throws_ok(
  $$update public.webhook_events set status = 'ignored' where id = 'evt_1A2b3C'$$,
  '42501', 'permission denied for table webhook_events',
  'escrow_service cannot update a webhook event'
);
select throws_ok(
  $$delete from public.webhook_events where id = 'evt_1A2b3C'$$,
  '42501', 'permission denied for table webhook_events',
  'escrow_service cannot delete a webhook event'
);

-- as service_role: BYPASSRLS; reads, records and marks events, deletes none
reset role;
select tests.authenticate_as_service('service_role');
select is(
  (select count(*)::int from public.webhook_events),
  3,
  'service_role reads every webhook event'
);
select lives_ok(
  $$insert into public.webhook_events (id, type, payload) values ('evt_4A2b3C', 'customer.created', '{}')$$,
  'service_role records a new webhook event'
);
select results_eq(
  $$with changed as (
      update public.webhook_events set status = 'failed', error_message = 'unknown customer'
      where id = 'evt_2A2b3C' returning 1
    ) select count(*)::int from changed$$,
  $$values (1)$$,
  'service_role marks a webhook event failed'
);
select throws_ok(
  $$delete from public.webhook_events where id = 'evt_1A2b3C'$$,
  '42501', 'permission denied for table webhook_events',
  'service_role cannot delete a webhook event'
);

-- the outcome, as postgres
reset role;
select results_eq(
  'select id, status::text from public.webhook_events order by id',
  $$values ('evt_1A2b3C'::text, 'processed'::text), ('evt_2A2b3C', 'failed'), ('evt_3A2b3C', 'received'),
    ('evt_4A2b3C', 'received')$$,
  'every event is there once, with the status the backend gave it'
);

select * from finish();
rollback;
