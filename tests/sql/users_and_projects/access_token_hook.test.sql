-- public.custom_access_token_hook: given Supabase's event, it puts the staff role of
-- public.users.role in the token, with the application role as user_role, keeps every other
-- claim, and gives a banned user no staff role; only the auth server's role may call it; the
-- claims it returns drive the policies. (tests/py/test_access_token_hook.py calls it as
-- supabase_auth_admin, which this test's role cannot become.)
begin;
select plan(17);

select tests.let_roles_call_pgtap('admin', 'auditor');
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('root');
select tests.create_supabase_user('aldo');
select tests.create_supabase_user('sam');
select tests.create_supabase_user('bea');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ada');
update public.users set role = 'system_admin' where id = tests.get_supabase_uid('root');
update public.users set role = 'auditor' where id = tests.get_supabase_uid('aldo');
update public.users set role = 'support' where id = tests.get_supabase_uid('sam');
update public.users set role = 'admin' where id = tests.get_supabase_uid('bea');
update auth.users set banned_until = now() + interval '1 day'
where id = tests.get_supabase_uid('bea');

/** The event the auth server sends for `who`, with the claims it is about to issue. */
create function pg_temp.event(who text) returns jsonb
language sql
as $$
  select jsonb_build_object(
    'user_id', tests.get_supabase_uid(who),
    'authentication_method', 'password',
    'claims', jsonb_build_object(
      'iss', 'http://127.0.0.1:54321/auth/v1', 'aud', 'authenticated',
      'exp', 1765003600, 'iat', 1765000000, 'sub', tests.get_supabase_uid(who),
      'email', who || '@example.test', 'phone', '', 'role', 'authenticated',
      'aal', 'aal2', 'amr', jsonb_build_array(jsonb_build_object('method', 'totp',
        'timestamp', 1765000000)),
      'session_id', '6c0a4c9e-0000-4000-8000-000000000001', 'is_anonymous', false,
      'user_role', 'admin'
    )
  )
$$;

create temporary table issued (who text primary key, answer jsonb) on commit drop;
grant select on issued to public;
insert into issued
select who, public.custom_access_token_hook(pg_temp.event(who))
from unnest(array['hana', 'carl', 'ada', 'root', 'aldo', 'sam', 'bea']) as who;
select is(
  (select answer #>> '{claims,role}' from issued where who = 'ada'),
  'admin',
  'an admin''s token carries the admin role'
);
select is(
  (select answer #>> '{claims,role}' from issued where who = 'root'),
  'admin',
  'so does a system admin''s'
);
select is(
  (select answer #>> '{claims,role}' from issued where who = 'aldo'),
  'auditor',
  'an auditor''s carries the auditor role'
);
select results_eq(
  $$select who, answer #>> '{claims,role}' from issued
    where who in ('hana', 'carl', 'sam') order by who$$,
  $$values ('carl', 'authenticated'), ('hana', 'authenticated'), ('sam', 'authenticated')$$,
  'homeowners, contractors and support stay authenticated'
);
select is(
  (select answer #>> '{claims,role}' from issued where who = 'bea'),
  'authenticated',
  'a banned admin gets no staff role'
);
select results_eq(
  $$select who, answer #>> '{claims,user_role}' from issued order by who$$,
  $$values ('ada', 'admin'), ('aldo', 'auditor'), ('bea', 'admin'), ('carl', 'contractor'),
    ('hana', 'homeowner'), ('root', 'system_admin'), ('sam', 'support')$$,
  'every token carries the application role as user_role, whatever the event claimed'
);
select is(
  (select (answer -> 'claims') - 'role' - 'user_role' from issued where who = 'ada'),
  (pg_temp.event('ada') -> 'claims') - 'role' - 'user_role',
  'every other claim is kept as the auth server made it'
);
select is(
  public.custom_access_token_hook(
    jsonb_set(pg_temp.event('hana'), '{user_id}', to_jsonb(gen_random_uuid()))
  ) #>> '{claims,role}',
  'authenticated',
  'a user with no profile stays authenticated'
);
select is(
  public.custom_access_token_hook('{"user_id": "not a uuid", "claims": {}}') #> '{error,http_code}',
  '400'::jsonb,
  'an event without a user is answered with an error, as the contract has it'
);
select is(
  public.custom_access_token_hook(jsonb_build_object('user_id', gen_random_uuid())) #> '{error,http_code}',
  '400'::jsonb,
  'so is one without claims'
);

-- only the auth server calls it
select ok(
  has_function_privilege('supabase_auth_admin', 'public.custom_access_token_hook(jsonb)', 'execute'),
  'supabase_auth_admin may execute it'
);
select is(
  (select array_agg(r order by r) from unnest(array[
      'anon', 'authenticated', 'service_role', 'admin', 'auditor', 'payment_service',
      'escrow_service'
    ]) as r
    where has_function_privilege(r, 'public.custom_access_token_hook(jsonb)', 'execute')),
  null,
  'no API, staff or backend role may'
);
select tests.authenticate_as('ada', aal => 'aal2');
select throws_ok(
  $$select public.custom_access_token_hook('{}')$$,
  '42501', 'permission denied for function custom_access_token_hook',
  'an admin cannot mint claims through it'
);
reset role;

-- the claims it returns drive the policies: an admin reads every profile, a user their own
select tests.impersonate(
  (select answer #>> '{claims,role}' from issued where who = 'ada'),
  (select answer -> 'claims' from issued where who = 'ada')
);
select is(
  (select count(*)::int from public.users),
  7,
  'with the admin''s claims, every profile is read'
);
reset role;
select tests.impersonate(
  (select answer #>> '{claims,role}' from issued where who = 'hana'),
  (select answer -> 'claims' from issued where who = 'hana')
);
select results_eq(
  $$select id from public.users$$,
  $$values (tests.get_supabase_uid('hana'))$$,
  'with a homeowner''s, only her own'
);
reset role;
select tests.impersonate(
  (select answer #>> '{claims,role}' from issued where who = 'bea'),
  (select answer -> 'claims' from issued where who = 'bea')
);
select results_eq(
  $$select id from public.users$$,
  $$values (tests.get_supabase_uid('bea'))$$,
  'with the banned admin''s, only her own: no staff reach'
);
reset role;
select tests.impersonate(
  (select answer #>> '{claims,role}' from issued where who = 'aldo'),
  (select answer -> 'claims' from issued where who = 'aldo')
);
select lives_ok(
  $$select count(*) from public.payment_audit_logs$$,
  'with the auditor''s, the audit log is read'
);
reset role;

select * from finish();
rollback;
