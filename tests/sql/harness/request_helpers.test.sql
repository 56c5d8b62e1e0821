-- The tests schema's helpers set exactly what PostgREST sets at the start of a request.
begin;
select plan(25);

select tests.create_supabase_user('helper-user', 'Helper@Example.test');

-- as a user at aal1
select tests.authenticate_as('helper-user');
select is(current_user::text, 'authenticated', 'the role is authenticated');
select is(current_setting('request.jwt.claims')::jsonb ->> 'role', 'authenticated', 'the claims carry the role');
select is(auth.uid(), tests.get_supabase_uid('helper-user'), 'the claims carry the user id as sub');
select is(auth.jwt() ->> 'aal', 'aal1', 'the default assurance level is aal1');
select is(auth.jwt() -> 'amr' -> 0 ->> 'method', 'password', 'an aal1 session signed in with a password');
select is(auth.jwt() ->> 'email', 'Helper@Example.test', 'the claims carry the email');
select is(current_setting('request.method'), 'POST', 'the default method is POST');
select is(current_setting('request.path'), '/rest/v1/', 'the default path is the REST root');
select is(current_setting('transaction_read_only'), 'off', 'a POST may write');
select is(current_setting('request.jwt.claim.sub', true), '', 'the legacy sub setting is cleared');

-- as the same user at aal2, with an explicit amr and headers
select tests.authenticate_as(
  'helper-user', aal => 'aal2',
  amr => '[{"method": "totp", "timestamp": 1700000000}]',
  method => 'patch', path => '/rest/v1/payment_methods',
  headers => '{"User-Agent": "payguard-test", "X-Forwarded-For": "203.0.113.7"}'
);
select is(auth.jwt() ->> 'aal', 'aal2', 'aal2 is set');
select is(auth.jwt() -> 'amr' -> 0 ->> 'timestamp', '1700000000', 'amr is taken as given');
select is(current_setting('request.method'), 'PATCH', 'the method is upper-cased');
select is(current_setting('request.path'), '/rest/v1/payment_methods', 'the path is set');
select is(
  current_setting('request.headers')::jsonb,
  '{"user-agent": "payguard-test", "x-forwarded-for": "203.0.113.7"}'::jsonb,
  'header names are lower-cased, as PostgREST does'
);
select throws_ok(
  $$select tests.authenticate_as('helper-user', aal => 'aal9')$$, '22023', 'aal must be aal1, aal2 or aal3, not aal9',
  'an unknown assurance level is refused'
);

-- by user id rather than by identifier
select tests.authenticate_as(tests.get_supabase_uid('helper-user'));
select is(auth.uid(), tests.get_supabase_uid('helper-user'), 'authenticate_as also takes a user id');
select throws_ok(
  $$select tests.authenticate_as('nobody-by-that-name')$$, 'P0002', 'no test user nobody-by-that-name',
  'an unknown test user is refused'
);

-- as a service role
select tests.authenticate_as_service('service_role');
select is(current_user::text, 'service_role', 'the role is the service role');
select is(auth.role(), 'service_role', 'the claims carry the service role');
select is(auth.uid(), null, 'a service request has no user');
select throws_ok(
  $$select tests.authenticate_as_service('no_such_role')$$, '22023', 'no role no_such_role',
  'an unknown service role is refused'
);

-- a GET is read-only, as PostgREST runs it
select tests.clear_authentication(method => 'GET');
select is(auth.role(), 'anon', 'an anonymous request carries role anon');
select is(current_setting('transaction_read_only'), 'on', 'a GET runs in a read-only transaction');
select throws_ok(
  $$select tests.authenticate_as('helper-user', method => 'POST')$$, '25006',
  'cannot begin a POST request: an earlier GET made this transaction read-only',
  'a write request after a GET in the same transaction is refused, not silently read-only'
);

select * from finish();
rollback;
