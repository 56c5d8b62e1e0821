-- public.payment_audit_logs: only auditors read the trail, whether by the database role auditor
-- or by an app role (public.users.role) of auditor or system_admin; service_role reads; no one
-- writes it through the API, and no one updates or deletes it.
begin;
select plan(48);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres (the tables' owner, which bypasses RLS)
select tests.create_supabase_user('alice');
select tests.create_supabase_user('bob');
select tests.create_supabase_user('aud');
select tests.create_supabase_user('sys');
select tests.create_supabase_user('adm');
select tests.create_supabase_user('sup');
update public.users set role = 'auditor' where id = tests.get_supabase_uid('aud');
update public.users set role = 'system_admin' where id = tests.get_supabase_uid('sys');
update public.users set role = 'admin' where id = tests.get_supabase_uid('adm');
update public.users set role = 'support' where id = tests.get_supabase_uid('sup');
-- user ids any role can read, even those with no USAGE on the tests schema
select set_config('fixture.alice', tests.get_supabase_uid('alice')::text, true);

insert into public.payment_audit_logs (
  operation, entity_type, entity_id, user_id, user_role, ip_address, success, new_values
)
values
  ('INSERT', 'payment_methods',
    'aaaaaaaa-0000-4000-8000-0000000000e1', tests.get_supabase_uid('alice'), 'homeowner',
    '203.0.113.7', true, '{"brand": "visa", "last4": "4242"}'),
  ('UPDATE', 'withdrawals',
    'bbbbbbbb-0000-4000-8000-0000000000e1', tests.get_supabase_uid('bob'), 'contractor',
    '198.51.100.9', false, null);
-- the whole trail as its owner sees it (the fixtures' own changes were audited too)
select set_config('fixture.audit_rows', (select count(*) from public.payment_audit_logs)::text, true);
select set_config(
  'fixture.audit_digest',
  (select md5(string_agg(l::text, ',' order by l.seq)) from public.payment_audit_logs as l),
  true
);

-- as an anonymous request: no privilege at all
select tests.clear_authentication();
select throws_ok(
  'select count(*) from public.payment_audit_logs',
  '42501', 'permission denied for table payment_audit_logs',
  'anon cannot read the audit log'
);
select throws_ok(
  $$insert into public.payment_audit_logs (operation, entity_type, entity_id, user_id, user_role, success)
    values ('DELETE', 'payment_methods', gen_random_uuid(), gen_random_uuid(), 'anon', true)$$,
  '42501', 'permission denied for table payment_audit_logs',
  'anon cannot write an audit entry'
);
select throws_ok(
  $$update public.payment_audit_logs set success = true where entity_id = 'bbbbbbbb-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payment_audit_logs',
  'anon cannot alter an audit entry'
);
select throws_ok(
  $$delete from public.payment_audit_logs where entity_id = 'aaaaaaaa-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payment_audit_logs',
  'anon cannot delete an audit entry'
);

-- as the user an entry is about, at aal1
select tests.authenticate_as('alice');
select is(
  (select count(*)::int from public.payment_audit_logs),
  0,
  'a homeowner sees no audit entry, not even those about them'
);
select is(
  (select count(*)::int from public.payment_audit_logs where entity_id = 'aaaaaaaa-0000-4000-8000-0000000000e1'),
  0,
  'a homeowner cannot read the entry about them by id'
);
select throws_ok(
  format(
    $$insert into public.payment_audit_logs (operation, entity_type, entity_id, user_id, user_role, success)
      values ('INSERT', 'payment_methods', gen_random_uuid(), %L, 'homeowner', true)$$,
    current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table payment_audit_logs',
  'a user cannot write an audit entry'
);
select throws_ok(
  $$update public.payment_audit_logs set success = false where entity_id = 'aaaaaaaa-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payment_audit_logs',
  'a user cannot alter the audit entry about them'
);
select throws_ok(
  $$delete from public.payment_audit_logs where entity_id = 'aaaaaaaa-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payment_audit_logs',
  'a user cannot delete the audit entry about them'
);

-- as the same user at aal2: MFA adds nothing here
select tests.authenticate_as('alice', aal => 'aal2');
select is(
  (select count(*)::int from public.payment_audit_logs),
  0,
  'a homeowner at aal2 still sees no audit entry'
);
select throws_ok(
  $$update public.payment_audit_logs set user_role = 'auditor' where entity_id = 'aaaaaaaa-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payment_audit_logs',
  'a user at aal2 cannot alter an audit entry'
);
select throws_ok(
  $$delete from public.payment_audit_logs where entity_id = 'aaaaaaaa-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payment_audit_logs',
  'a user at aal2 cannot delete an audit entry'
);

-- as another user, at aal1 and aal2
select tests.authenticate_as('bob');
select is(
  (select count(*)::int from public.payment_audit_logs where entity_id = 'aaaaaaaa-0000-4000-8000-0000000000e1'),
  0,
  'another user at aal1 cannot read someone else''s audit entry by id'
);
select tests.authenticate_as('bob', aal => 'aal2');
select is(
  (select count(*)::int from public.payment_audit_logs where entity_id = 'aaaaaaaa-0000-4000-8000-0000000000e1'),
  0,
  'another user at aal2 cannot read someone else''s audit entry by id'
);

-- as signed-in staff whose app role is not auditor or system_admin
select tests.authenticate_as('adm', aal => 'aal2');
select is(
  (select count(*)::int from public.payment_audit_logs),
  0,
  'a user whose app role is admin sees no audit entry'
);
select tests.authenticate_as('sup', aal => 'aal2');
select is(
  (select count(*)::int from public.payment_audit_logs),
  0,
  'a user whose app role is support sees no audit entry'
);

-- as a signed-in user whose app role is auditor
select tests.authenticate_as('aud');
select is(
  (select count(*)::int from public.payment_audit_logs),
  current_setting('fixture.audit_rows')::int,
  'a user whose app role is auditor reads the whole audit log'
);
select results_eq(
  $$select entity_id from public.payment_audit_logs
    where entity_id in ('aaaaaaaa-0000-4000-8000-0000000000e1', 'bbbbbbbb-0000-4000-8000-0000000000e1')
    order by entity_id$$,
  $$values ('aaaaaaaa-0000-4000-8000-0000000000e1'), ('bbbbbbbb-0000-4000-8000-0000000000e1')$$,
  'including the entries about other users'
);
select throws_ok(
  $$insert into public.payment_audit_logs (operation, entity_type, entity_id, user_id, user_role, success)
    values ('INSERT', 'payment_methods', gen_random_uuid(), gen_random_uuid(), 'auditor', true)$$,
  '42501', 'permission denied for table payment_audit_logs',
  'an auditor (app role) cannot write an audit entry'
);
select throws_ok(
  $$update public.payment_audit_logs set success = true where entity_id = 'bbbbbbbb-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payment_audit_logs',
  'an auditor (app role) cannot alter an audit entry'
);
select throws_ok(
  $$delete from public.payment_audit_logs where entity_id = 'bbbbbbbb-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payment_audit_logs',
  'an auditor (app role) cannot delete an audit entry'
);
select throws_ok(
  'truncate public.payment_audit_logs',
  '42501', 'permission denied for table payment_audit_logs',
  'an auditor (app role) cannot truncate the audit log'
);

-- as a signed-in user whose app role is system_admin
select tests.authenticate_as('sys', aal => 'aal2');
select is(
  (select count(*)::int from public.payment_audit_logs),
  current_setting('fixture.audit_rows')::int,
  'a user whose app role is system_admin reads the whole audit log'
);
select throws_ok(
  $$delete from public.payment_audit_logs where entity_id = 'bbbbbbbb-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payment_audit_logs',
  'a system_admin (app role) cannot delete an audit entry'
);

-- as admin (a staff user whose JWT role is admin): no privilege at all
reset role;
select tests.authenticate_as('adm', aal => 'aal2', role_name => 'admin');
select throws_ok(
  'select count(*) from public.payment_audit_logs',
  '42501', 'permission denied for table payment_audit_logs',
  'admin cannot read the audit log'
);
select throws_ok(
  $$insert into public.payment_audit_logs (operation, entity_type, entity_id, user_id, user_role, success)
    values ('INSERT', 'payment_methods', gen_random_uuid(), gen_random_uuid(), 'admin', true)$$,
  '42501', 'permission denied for table payment_audit_logs',
  'admin cannot write an audit entry'
);
select throws_ok(
  $$update public.payment_audit_logs set success = true where entity_id = 'bbbbbbbb-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payment_audit_logs',
  'admin cannot alter an audit entry'
);
select throws_ok(
  $$delete from public.payment_audit_logs where entity_id = 'bbbbbbbb-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payment_audit_logs',
  'admin cannot delete an audit entry'
);

-- as auditor (the database role, for a backend that asks as auditor)
reset role;
select tests.authenticate_as_service('auditor');
select is(
  (select count(*)::int from public.payment_audit_logs),
  current_setting('fixture.audit_rows')::int,
  'the auditor role reads the whole audit log'
);
select throws_ok(
  $$insert into public.payment_audit_logs (operation, entity_type, entity_id, user_id, user_role, success)
    values ('INSERT', 'payment_methods', gen_random_uuid(), gen_random_uuid(), 'auditor', true)$$,
  '42501', 'permission denied for table payment_audit_logs',
  'the auditor role cannot write an audit entry'
);
select throws_ok(
  $$update public.payment_audit_logs set success = true where entity_id = 'bbbbbbbb-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payment_audit_logs',
  'the auditor role cannot alter an audit entry'
);
select throws_ok(
  $$delete from public.payment_audit_logs where entity_id = 'bbbbbbbb-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payment_audit_logs',
  'the auditor role cannot delete an audit entry'
);
select throws_ok(
  'truncate public.payment_audit_logs',
  '42501', 'permission denied for table payment_audit_logs',
  'the auditor role cannot truncate the audit log'
);

-- as auditor (a staff user whose JWT role is auditor)
reset role;
select tests.authenticate_as('aud', role_name => 'auditor');
select is(
  (select count(*)::int from public.payment_audit_logs),
  current_setting('fixture.audit_rows')::int,
  'a staff user whose JWT role is auditor reads the whole audit log'
);

-- as payment_service: no privilege at all
reset role;
select tests.authenticate_as_service('payment_service');
select throws_ok(
  'select count(*) from public.payment_audit_logs',
  '42501', 'permission denied for table payment_audit_logs',
  'payment_service cannot read the audit log'
);
select throws_ok(
  $$insert into public.payment_audit_logs (operation, entity_type, entity_id, user_id, user_role, success)
    values ('INSERT', 'payment_methods', gen_random_uuid(), gen_random_uuid(), 'system', true)$$,
  '42501', 'permission denied for table payment_audit_logs',
  'payment_service cannot write an audit entry'
);
select throws_ok(
  $$update public.payment_audit_logs set success = true where entity_id = 'bbbbbbbb-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payment_audit_logs',
  'payment_service cannot alter an audit entry'
);
select throws_ok(
  $$delete from public.payment_audit_logs where entity_id = 'bbbbbbbb-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payment_audit_logs',
  'payment_service cannot delete an audit entry'
);

-- as escrow_service: no privilege at all
reset role;
select tests.authenticate_as_service('escrow_service');
select throws_ok(
  'select count(*) from public.payment_audit_logs',
  '42501', 'permission denied for table payment_audit_logs',
  'escrow_service cannot read the audit log'
);
select throws_ok(
  $$insert into public.payment_audit_logs (operation, entity_type, entity_id, user_id, user_role, success)
    values ('INSERT', 'payment_methods', gen_random_uuid(), gen_random_uuid(), 'system', true)$$,
  '42501', 'permission denied for table payment_audit_logs',
  'escrow_service cannot write an audit entry'
);
select throws_ok(
  $$update public.payment_audit_logs set success = true where entity_id = 'bbbbbbbb-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payment_audit_logs',
  'escrow_service cannot alter an audit entry'
);
select throws_ok(
  $$delete from public.payment_audit_logs where entity_id = 'bbbbbbbb-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payment_audit_logs',
  'escrow_service cannot delete an audit entry'
);

-- as service_role: BYPASSRLS, but only reads
reset role;
select tests.authenticate_as_service('service_role');
select is(
  (select count(*)::int from public.payment_audit_logs),
  current_setting('fixture.audit_rows')::int,
  'service_role reads the whole audit log'
);
select throws_ok(
  $$insert into public.payment_audit_logs (operation, entity_type, entity_id, user_id, user_role, success)
    values ('INSERT', 'payment_methods', gen_random_uuid(), gen_random_uuid(), 'system', true)$$,
  '42501', 'permission denied for table payment_audit_logs',
  'service_role cannot write an audit entry'
);
select throws_ok(
  $$update public.payment_audit_logs set success = true where entity_id = 'bbbbbbbb-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payment_audit_logs',
  'service_role cannot alter an audit entry'
);
select throws_ok(
  $$delete from public.payment_audit_logs where entity_id = 'bbbbbbbb-0000-4000-8000-0000000000e1'$$,
  '42501', 'permission denied for table payment_audit_logs',
  'service_role cannot delete an audit entry'
);
select throws_ok(
  'truncate public.payment_audit_logs',
  '42501', 'permission denied for table payment_audit_logs',
  'service_role cannot truncate the audit log'
);

-- the outcome, as postgres: the trail is as it was written
reset role;
select is(
  (select md5(string_agg(l::text, ',' order by l.seq)) from public.payment_audit_logs as l),
  current_setting('fixture.audit_digest'),
  'no entry was added, altered or deleted'
);

select * from finish();
rollback;
