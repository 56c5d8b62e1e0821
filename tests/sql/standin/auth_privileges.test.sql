-- The API roles can look up names in `auth` and call its functions, but read none of its
-- tables: Supabase grants them no table privileges there.
begin;
select plan(10);

select ok(has_schema_privilege('authenticated', 'auth', 'usage'), 'authenticated has USAGE on auth');
select ok(has_schema_privilege('anon', 'auth', 'usage'), 'anon has USAGE on auth');
select ok(not has_schema_privilege('authenticated', 'auth', 'create'), 'authenticated cannot create in auth');

-- as an authenticated user
select tests.create_supabase_user('reader');
select tests.authenticate_as('reader');
select throws_ok(
  'select count(*) from auth.users', '42501', 'permission denied for table users',
  'authenticated cannot read auth.users'
);
select throws_ok(
  'select count(*) from auth.mfa_factors', '42501', 'permission denied for table mfa_factors',
  'authenticated cannot read auth.mfa_factors (why MFA lookups belong in a security-definer function)'
);
select is(auth.uid(), tests.get_supabase_uid('reader'), 'but auth.uid() works for them');

-- as an anonymous request
select tests.clear_authentication();
select throws_ok(
  'select count(*) from auth.users', '42501', 'permission denied for table users',
  'anon cannot read auth.users'
);
select throws_ok(
  'select count(*) from auth.mfa_factors', '42501', 'permission denied for table mfa_factors',
  'anon cannot read auth.mfa_factors'
);

-- as the schema owner
reset role;
select lives_ok('select count(*) from auth.users', 'postgres reads auth.users');
select lives_ok('select count(*) from auth.mfa_factors', 'postgres reads auth.mfa_factors');

select * from finish();
rollback;
