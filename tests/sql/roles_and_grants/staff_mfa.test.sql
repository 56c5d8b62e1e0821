-- Staff are held to the users' bar: a staff member's write to any table staff may write needs
-- an MFA session (aal2), and a role change a recent MFA step-up too; the same writes pass at
-- aal2. Writes by users and the backend roles are not touched by the rule.
begin;
select plan(15);

select tests.let_roles_call_pgtap();
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('aldo');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ada');
update public.users set role = 'auditor' where id = tests.get_supabase_uid('aldo');
select tests.create_project_payments('hana', 'carl', 1);

-- at aal1, every staff write is refused, whatever the table
select tests.authenticate_as('ada', aal => 'aal1', role_name => 'admin');
select throws_ok(
  format($$update public.users set role = 'auditor' where id = %L$$, tests.get_supabase_uid('hana')),
  'PT403', 'a staff member''s change to users needs multi-factor authentication (aal2)',
  'an admin at aal1 cannot change a user''s role'
);
select throws_ok(
  $$update public.escrow_accounts set status = status$$,
  'PT403', 'a staff member''s change to escrow_accounts needs multi-factor authentication (aal2)',
  'nor an escrow account'
);
select throws_ok(
  $$update public.milestone_payments set status = status$$,
  'PT403', 'a staff member''s change to milestone_payments needs multi-factor authentication (aal2)',
  'nor a milestone payment'
);
select throws_ok(
  $$insert into public.payment_transactions (user_id, amount_minor, currency, type, status)
    values ((select id from public.users where role = 'homeowner'), 100, 'USD', 'charge', 'pending')$$,
  'PT403', 'a staff member''s change to payment_transactions needs multi-factor authentication (aal2)',
  'nor record a payment transaction'
);
reset role;

-- the rule reads the request's token too: a staff token at aal1 is refused whatever role the
-- statement runs as (a security-definer function's writes included)
select set_config('request.jwt.claims', jsonb_build_object(
  'role', 'admin', 'aal', 'aal1', 'sub', tests.get_supabase_uid('ada'))::text, true);
select throws_ok(
  $$update public.escrow_accounts set status = status$$,
  'PT403', 'a staff member''s change to escrow_accounts needs multi-factor authentication (aal2)',
  'a write made for a staff request at aal1 is refused even as the tables'' owner'
);
select set_config('request.jwt.claims', '', true);

-- a role change needs a recent step-up as well as aal2
select tests.authenticate_as(
  'ada', aal => 'aal2', role_name => 'admin',
  amr => jsonb_build_array(jsonb_build_object(
    'method', 'totp', 'timestamp', extract(epoch from now())::bigint - 3600
  ))
);
select throws_ok(
  format($$update public.users set role = 'auditor' where id = %L$$, tests.get_supabase_uid('hana')),
  'PT403', 'a staff member''s change to users needs a recent MFA step-up',
  'at aal2 with a step-up an hour old, a role change is refused'
);
select lives_ok(
  $$update public.escrow_accounts set status = status$$,
  'but a write that is not security-sensitive passes'
);
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select lives_ok(
  format($$update public.users set role = 'contractor' where id = %L$$, tests.get_supabase_uid('hana')),
  'at aal2 with a fresh step-up, an admin changes a user''s role'
);
select lives_ok(
  $$update public.escrow_accounts set status = status$$,
  'and writes an escrow account'
);
reset role;
select is(
  (select role::text from public.users where id = tests.get_supabase_uid('hana')),
  'contractor',
  'the role change took'
);

-- an auditor writes nothing, at any level
select tests.authenticate_as('aldo', aal => 'aal2', role_name => 'auditor');
select throws_ok(
  $$update public.escrow_accounts set status = status$$,
  '42501', null,
  'an auditor at aal2 still has no write'
);
reset role;

-- users and the backend are not held by the staff rule
select tests.authenticate_as('hana', aal => 'aal1');
select lives_ok(
  $$update public.users set full_name = 'Hana Ito' where id = auth.uid()$$,
  'a user at aal1 still edits her own profile'
);
reset role;
select tests.authenticate_as_service('payment_service');
select lives_ok(
  $$update public.milestone_payments set status = status$$,
  'payment_service writes with no MFA of its own'
);
reset role;
select tests.authenticate_as_service('service_role');
select lives_ok(
  $$update public.escrow_accounts set status = status$$,
  'so does service_role'
);
reset role;
select is(
  (select count(*)::int from pg_trigger as t
    where t.tgname = 'staff_writes_need_mfa' and not t.tgisinternal),
  9,
  'the rule stands on each of the nine tables staff may write'
);

select * from finish();
rollback;
