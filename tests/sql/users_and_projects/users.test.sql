-- public.users: a user reads their own profile and edits its name and phone, but never its role
-- (nor anyone else's profile); admin reads every profile and changes roles, and only roles;
-- payment_service reads; service_role has all; no one else has any.
begin;
select plan(55);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres (the tables' owner, which bypasses RLS)
select tests.create_supabase_user('alice');
select tests.create_supabase_user('bob', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('mallory', metadata => '{"role": "admin"}');
select tests.create_supabase_user('adm');
select tests.create_supabase_user('aud');
select tests.create_supabase_user('dora');
update public.users set role = 'admin' where id = tests.get_supabase_uid('adm');
update public.users set role = 'auditor' where id = tests.get_supabase_uid('aud');
update public.users set full_name = 'Bob Builder' where id = tests.get_supabase_uid('bob');
-- dora signed up but has no profile yet: service_role creates it below
delete from public.users where id = tests.get_supabase_uid('dora');
-- user ids any role can read, even those with no USAGE on the tests schema
select set_config('fixture.alice', tests.get_supabase_uid('alice')::text, true);
select set_config('fixture.bob', tests.get_supabase_uid('bob')::text, true);
select set_config('fixture.dora', tests.get_supabase_uid('dora')::text, true);
select set_config('fixture.adm', tests.get_supabase_uid('adm')::text, true);

-- the role a user signs up with: only homeowner or contractor is honoured
select is(
  (select role::text from public.users where id = tests.get_supabase_uid('bob')),
  'contractor',
  'a user who signs up as a contractor gets the contractor role'
);
select is(
  (select role::text from public.users where id = tests.get_supabase_uid('mallory')),
  'homeowner',
  'a user who asks for the admin role at sign-up gets the homeowner role'
);
-- Supabase Auth lets a user rewrite their own user_metadata; the profile's role must not follow
update auth.users set raw_user_meta_data = raw_user_meta_data || '{"role": "admin"}'
where id = tests.get_supabase_uid('alice');
select is(
  (select role::text from public.users where id = tests.get_supabase_uid('alice')),
  'homeowner',
  'rewriting one''s own user_metadata role later does not change the profile''s role'
);

-- as an anonymous request: no privilege at all
select tests.clear_authentication();
select throws_ok(
  'select count(*) from public.users',
  '42501', 'permission denied for table users',
  'anon cannot read profiles'
);
select throws_ok(
  format($$insert into public.users (id, email) values (%L, 'dora@example.test')$$, current_setting('fixture.dora')),
  '42501', 'permission denied for table users',
  'anon cannot create a profile'
);
select throws_ok(
  format($$update public.users set full_name = 'anon' where id = %L$$, current_setting('fixture.alice')),
  '42501', 'permission denied for table users',
  'anon cannot update a profile'
);
select throws_ok(
  format($$delete from public.users where id = %L$$, current_setting('fixture.alice')),
  '42501', 'permission denied for table users',
  'anon cannot delete a profile'
);

-- as the owner at aal1
select tests.authenticate_as('alice');
select results_eq(
  'select id::text from public.users',
  format($$values (%L)$$, current_setting('fixture.alice')),
  'a user sees exactly their own profile'
);
select is(
  (select count(*)::int from public.users where id = current_setting('fixture.bob')::uuid),
  0,
  'reading another user''s profile by id shows nothing'
);
select results_eq(
  format(
    $$with changed as (
        update public.users set full_name = 'Alice Smith', phone = '+15550100'
        where id = %L returning 1
      ) select count(*)::int from changed$$,
    current_setting('fixture.alice')
  ),
  $$values (1)$$,
  'a user edits the name and phone of their own profile'
);
select throws_ok(
  format($$update public.users set role = 'admin' where id = %L$$, current_setting('fixture.alice')),
  '42501', 'permission denied for table users',
  'a user cannot raise their own role to admin'
);
select throws_ok(
  format($$update public.users set role = 'auditor' where id = %L$$, current_setting('fixture.alice')),
  '42501', 'permission denied for table users',
  'a user cannot raise their own role to auditor'
);
select throws_ok(
  format(
    $$update public.users set id = %L where id = %L$$,
    current_setting('fixture.dora'), current_setting('fixture.alice')
  ),
  '42501', 'permission denied for table users',
  'a user cannot move their profile to another id'
);
select throws_ok(
  format($$update public.users set email = 'ceo@example.test' where id = %L$$, current_setting('fixture.alice')),
  '42501', 'permission denied for table users',
  'a user cannot change the email of their profile (Supabase Auth owns it)'
);
select results_eq(
  format(
    $$with changed as (
        update public.users set full_name = 'Not Bob' where id = %L returning 1
      ) select count(*)::int from changed$$,
    current_setting('fixture.bob')
  ),
  $$values (0)$$,
  'updating another user''s profile changes nothing'
);
select throws_ok(
  format($$update public.users set role = 'homeowner' where id = %L$$, current_setting('fixture.bob')),
  '42501', 'permission denied for table users',
  'a user cannot change another user''s role'
);
select throws_ok(
  format(
    $$insert into public.users (id, email, role) values (%L, 'dora@example.test', 'admin')$$,
    current_setting('fixture.dora')
  ),
  '42501', 'permission denied for table users',
  'a user cannot create a profile, for themselves or anyone else'
);
select throws_ok(
  format($$delete from public.users where id = %L$$, current_setting('fixture.alice')),
  '42501', 'permission denied for table users',
  'a user cannot delete their own profile'
);

-- as the owner at aal2: MFA does not unlock the role either
select tests.authenticate_as('alice', aal => 'aal2');
select throws_ok(
  format($$update public.users set role = 'system_admin' where id = %L$$, current_setting('fixture.alice')),
  '42501', 'permission denied for table users',
  'a user at aal2 cannot raise their own role to system_admin'
);
select results_eq(
  format(
    $$with changed as (
        update public.users set phone = '+15550101' where id = %L returning 1
      ) select count(*)::int from changed$$,
    current_setting('fixture.alice')
  ),
  $$values (1)$$,
  'a user at aal2 edits their own phone'
);
select results_eq(
  format(
    $$with changed as (
        update public.users set full_name = 'Not Bob' where id = %L returning 1
      ) select count(*)::int from changed$$,
    current_setting('fixture.bob')
  ),
  $$values (0)$$,
  'updating another user''s profile at aal2 changes nothing'
);
select throws_ok(
  format($$delete from public.users where id = %L$$, current_setting('fixture.alice')),
  '42501', 'permission denied for table users',
  'a user at aal2 cannot delete their own profile'
);
select is(
  (select role::text from public.users where id = current_setting('fixture.alice')::uuid),
  'homeowner',
  'after all those attempts the user is still a homeowner'
);

-- as another user at aal1
select tests.authenticate_as('bob');
select is(
  (select count(*)::int from public.users where id = current_setting('fixture.alice')::uuid),
  0,
  'another user at aal1 cannot read the owner''s profile by id'
);
select results_eq(
  format(
    $$with changed as (
        update public.users set phone = '+15550199' where id = %L returning 1
      ) select count(*)::int from changed$$,
    current_setting('fixture.alice')
  ),
  $$values (0)$$,
  'another user at aal1 cannot update the owner''s profile'
);
select throws_ok(
  format($$delete from public.users where id = %L$$, current_setting('fixture.alice')),
  '42501', 'permission denied for table users',
  'another user at aal1 cannot delete the owner''s profile'
);

-- as another user at aal2
select tests.authenticate_as('bob', aal => 'aal2');
select is(
  (select count(*)::int from public.users where id = current_setting('fixture.alice')::uuid),
  0,
  'another user at aal2 cannot read the owner''s profile by id'
);
select results_eq(
  format(
    $$with changed as (
        update public.users set full_name = 'Hijacked' where id = %L returning 1
      ) select count(*)::int from changed$$,
    current_setting('fixture.alice')
  ),
  $$values (0)$$,
  'another user at aal2 cannot update the owner''s profile'
);

-- as a signed-in user whose app role is admin but whose JWT role is authenticated
select tests.authenticate_as('adm', aal => 'aal2');
select throws_ok(
  format($$update public.users set role = 'contractor' where id = %L$$, current_setting('fixture.alice')),
  '42501', 'permission denied for table users',
  'the app role alone does not let a user change roles: only the admin database role does'
);

-- as admin (a staff user whose JWT role is admin): reads all, changes roles only
reset role;
select tests.authenticate_as('adm', aal => 'aal2', role_name => 'admin');
select is(
  (select count(*)::int from public.users
    where id in (current_setting('fixture.alice')::uuid, current_setting('fixture.bob')::uuid)),
  2,
  'admin reads every profile'
);
select results_eq(
  format(
    $$with changed as (
        update public.users set role = 'support' where id = %L returning 1
      ) select count(*)::int from changed$$,
    current_setting('fixture.bob')
  ),
  $$values (1)$$,
  'admin changes a user''s role'
);
-- no user may change their own role (brief §2), an admin included: the audit log trusts it
select results_eq(
  format(
    $$with changed as (
        update public.users set role = 'auditor' where id = %L returning 1
      ) select count(*)::int from changed$$,
    current_setting('fixture.adm')
  ),
  $$values (0)$$,
  'admin cannot change their own role (to auditor, which would open the audit log to them)'
);
select is(
  (select role::text from public.users where id = current_setting('fixture.adm')::uuid),
  'admin',
  'the admin''s own role is unchanged'
);
select throws_ok(
  format($$update public.users set full_name = 'Renamed by admin' where id = %L$$, current_setting('fixture.bob')),
  '42501', 'permission denied for table users',
  'admin cannot edit a user''s name'
);
select throws_ok(
  format($$update public.users set email = 'x@example.test' where id = %L$$, current_setting('fixture.bob')),
  '42501', 'permission denied for table users',
  'admin cannot edit a user''s email'
);
select throws_ok(
  format($$insert into public.users (id, email) values (%L, 'dora@example.test')$$, current_setting('fixture.dora')),
  '42501', 'permission denied for table users',
  'admin cannot create a profile'
);
select throws_ok(
  format($$delete from public.users where id = %L$$, current_setting('fixture.bob')),
  '42501', 'permission denied for table users',
  'admin cannot delete a profile'
);

-- as auditor: no privilege at all
reset role;
select tests.authenticate_as('aud', role_name => 'auditor');
select throws_ok(
  'select count(*) from public.users',
  '42501', 'permission denied for table users',
  'auditor cannot read profiles'
);
select throws_ok(
  format($$insert into public.users (id, email) values (%L, 'dora@example.test')$$, current_setting('fixture.dora')),
  '42501', 'permission denied for table users',
  'auditor cannot create a profile'
);
select throws_ok(
  format($$update public.users set role = 'system_admin' where id = %L$$, current_setting('fixture.alice')),
  '42501', 'permission denied for table users',
  'auditor cannot update a profile'
);
select throws_ok(
  format($$delete from public.users where id = %L$$, current_setting('fixture.alice')),
  '42501', 'permission denied for table users',
  'auditor cannot delete a profile'
);

-- as payment_service: reads only
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  (select count(*)::int from public.users
    where id in (current_setting('fixture.alice')::uuid, current_setting('fixture.bob')::uuid)),
  2,
  'payment_service reads every profile'
);
select throws_ok(
  format($$insert into public.users (id, email) values (%L, 'dora@example.test')$$, current_setting('fixture.dora')),
  '42501', 'permission denied for table users',
  'payment_service cannot create a profile'
);
select throws_ok(
  format($$update public.users set role = 'admin' where id = %L$$, current_setting('fixture.alice')),
  '42501', 'permission denied for table users',
  'payment_service cannot update a profile'
);
select throws_ok(
  format($$delete from public.users where id = %L$$, current_setting('fixture.alice')),
  '42501', 'permission denied for table users',
  'payment_service cannot delete a profile'
);

-- as escrow_service: no privilege at all
reset role;
select tests.authenticate_as_service('escrow_service');
select throws_ok(
  'select count(*) from public.users',
  '42501', 'permission denied for table users',
  'escrow_service cannot read profiles'
);
select throws_ok(
  format($$insert into public.users (id, email) values (%L, 'dora@example.test')$$, current_setting('fixture.dora')),
  '42501', 'permission denied for table users',
  'escrow_service cannot create a profile'
);
select throws_ok(
  format($$update public.users set role = 'admin' where id = %L$$, current_setting('fixture.alice')),
  '42501', 'permission denied for table users',
  'escrow_service cannot update a profile'
);
select throws_ok(
  format($$delete from public.users where id = %L$$, current_setting('fixture.alice')),
  '42501', 'permission denied for table users',
  'escrow_service cannot delete a profile'
);

-- as service_role: BYPASSRLS and every privilege
reset role;
select tests.authenticate_as_service('service_role');
select is(
  (select count(*)::int from public.users
    where id in (current_setting('fixture.alice')::uuid, current_setting('fixture.bob')::uuid)),
  2,
  'service_role reads every profile'
);
select lives_ok(
  format($$insert into public.users (id, email) values (%L, 'dora@example.test')$$, current_setting('fixture.dora')),
  'service_role creates a missing profile'
);
select results_eq(
  format(
    $$with changed as (
        update public.users set full_name = 'Dora' where id = %L returning 1
      ) select count(*)::int from changed$$,
    current_setting('fixture.dora')
  ),
  $$values (1)$$,
  'service_role updates a profile'
);
select results_eq(
  format(
    $$with changed as (
        delete from public.users where id = %L returning 1
      ) select count(*)::int from changed$$,
    current_setting('fixture.dora')
  ),
  $$values (1)$$,
  'service_role deletes a profile'
);

-- the outcome, as postgres
reset role;
select results_eq(
  $$select u.full_name, u.phone, u.role::text from public.users as u
    where u.id = tests.get_supabase_uid('alice')$$,
  $$values ('Alice Smith'::text, '+15550101'::text, 'homeowner'::text)$$,
  'the owner''s profile has the name and phone they set, and the role they signed up with'
);
select results_eq(
  $$select u.full_name, u.role::text from public.users as u where u.id = tests.get_supabase_uid('bob')$$,
  $$values ('Bob Builder'::text, 'support'::text)$$,
  'another user''s profile has only the role admin gave it'
);

select * from finish();
rollback;
