-- Attacks on the refusal records (class 3), both ways: an API role creates no temporary
-- object that could stand in for a built-in type inside a function running as its owner; a
-- request as `authenticated` whose token names no user has its refusals counted and bounded
-- like a user's; refusals by every code path count in one window; what a client chooses
-- (huge Unicode arguments and headers, a preset response status) stays bounded and forges
-- nothing.
begin;
select plan(16);

select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana's kitchen, built by carl, with a pending payment; sam, a
-- stranger
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('sam');
update private.settings set value = '{"time_zone": "UTC", "from": 0, "to": 24}'
where key = 'business_hours';
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array[40000],
  titles => array['Cabinets']
);
create temporary table huge (value text not null);
insert into huge (value) values (repeat(U&'\00E9\200B\+01F600', 100000));
grant select on huge to authenticated;
select set_config('fixture.mark', (select max(seq) from public.payment_audit_logs)::text, true);

-- temporary objects: none for the API roles, the owner keeps them
select is(
  (
    select array_agg(r.rolname::text order by r.rolname)
    from pg_catalog.pg_roles as r
    where r.rolname in ('anon', 'authenticated', 'service_role', 'payment_service',
      'escrow_service', 'admin', 'auditor', 'authenticator')
      and has_database_privilege(r.rolname, current_database(), 'temporary')
  ),
  null,
  'no API role, nor the role PostgREST logs in as, may create temporary objects'
);
select lives_ok(
  $$create temporary table owner_scratch (n integer)$$,
  'the owner still creates temporary tables'
);
select tests.authenticate_as('sam', aal => 'aal2');
select throws_ok(
  $$create domain pg_temp.text as pg_catalog.text check (value is not null)$$,
  '42501', null,
  'sam cannot create a temporary domain named like a built-in type'
);
select throws_ok(
  $$create function pg_temp.witness() returns boolean language sql as 'select true'$$,
  '42501', null,
  'nor a temporary function'
);
reset role;
select tests.authenticate_as('sam', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$create type pg_temp.jsonb as (value integer)$$,
  '42501', null,
  'nor can an admin create a temporary type'
);
reset role;
select tests.authenticate_as_service('payment_service');
select throws_ok(
  $$create temporary table forged_log (n integer)$$,
  '42501', null,
  'nor a service a temporary table'
);
reset role;

-- a request as authenticated whose token names a user that does not exist: 21 refusals,
-- each with another made-up sub, in one window (disputes.insert, Medium: 20 calls)
select tests.impersonate('authenticated', '{"aal": "aal2"}');
select is(
  (
    select array_agg(a ->> 'code' order by n)
    from generate_series(1, 21) as n
    cross join lateral (
      select set_config('request.jwt.claims', jsonb_build_object(
        'role', 'authenticated', 'aal', 'aal2', 'sub', gen_random_uuid())::text, true)
    ) as s
    cross join lateral public.open_dispute(gen_random_uuid(), 'It broke', 'key-' || n) as a
  ),
  array_fill('42501'::text, array[20]) || array['PT429'],
  'made-up subs share one counter: 20 refusals answer 403, the 21st 429'
);
-- and with no sub at all
select set_config('request.jwt.claims', '{"role": "authenticated", "aal": "aal2"}', true);
select is(
  (
    select array_agg(a ->> 'code' order by n)
    from generate_series(1, 5) as n
    cross join lateral public.open_dispute(
      '30000000-0000-4000-8000-000000000001', 'It broke', 'key-none-' || n
    ) as a
  ),
  array_fill('PT429'::text, array[5]),
  'a request with no sub is counted in the same counter: 429'
);
reset role;
select is(
  (select count(*)::int from public.payment_audit_logs
    where seq > current_setting('fixture.mark')::bigint and operation = 'open_dispute'),
  21,
  'they left 21 audit rows, the limit and one'
);
select is(
  (select jsonb_build_object('user', user_id, 'refused_calls', details -> 'refused_calls')
    from public.security_alerts where operation = 'open_dispute'),
  '{"user": null, "refused_calls": 6}'::jsonb,
  'and one alert with no user that counts the 6 refusals past the limit'
);

-- a real user keeps a counter of their own, and every kind of refusal counts in it
select tests.authenticate_as('sam', aal => 'aal2');
select is(
  array[
    public.open_dispute('30000000-0000-4000-8000-000000000001', 'It broke', 'key-a') ->> 'code',
    public.open_dispute(gen_random_uuid(), 'It broke', 'key-b') ->> 'code',
    public.open_dispute('30000000-0000-4000-8000-000000000001', 'It broke', '') ->> 'code',
    public.open_dispute('30000000-0000-4000-8000-000000000001', repeat('x', 5001), 'key-c') ->> 'code',
    public.open_dispute('30000000-0000-4000-8000-000000000001', '', 'key-d') ->> 'code'
  ],
  array['42501', '42501', 'PT422', '42501', '42501'],
  'sam''s refusals answer with their own codes (another''s payment, an unknown one, a missing key, a reason too long or empty), not the others'' 429'
);
reset role;
select is(
  (select call_count from private.rate_limit_counters
    where user_id = tests.get_supabase_uid('sam') and operation = 'disputes.insert'),
  5,
  'and each of them, whatever refused it, counts in his window'
);

-- what the client chose stays bounded: 300,000 characters of accents, zero-width spaces and
-- emoji in every text argument and in the headers
select tests.authenticate_as('sam', aal => 'aal2', headers => jsonb_build_object(
  'user-agent', (select value from huge), 'x-correlation-id', (select value from huge),
  'x-forwarded-for', (select value from huge)
));
select set_config('response.status', '200', true);
select is(
  (
    select a ->> 'code' || ' ' || current_setting('response.status')
    from public.open_dispute('30000000-0000-4000-8000-000000000001', (select value from huge),
      (select value from huge)) as a
  ),
  'PT422 422',
  'a preset response status is overwritten with the refusal''s'
);
reset role;
select cmp_ok(
  (select pg_column_size(l.*) from public.payment_audit_logs as l
    where seq > current_setting('fixture.mark')::bigint and operation = 'open_dispute'
    order by seq desc limit 1),
  '<', 8000,
  'and its audit row stays under 8 kB'
);
select is(
  (select new_values ->> 'reason' from public.payment_audit_logs
    where seq > current_setting('fixture.mark')::bigint and operation = 'open_dispute'
    order by seq desc limit 1),
  format('[oversized: 300000 characters, sha256 %s]',
    encode(extensions.digest((select value from huge), 'sha256'), 'hex')),
  'the reason is kept as its length and fingerprint'
);

-- hana still opens her own dispute
select tests.set_milestone_payment_status('30000000-0000-4000-8000-000000000001', 'funded');
select tests.authenticate_as('hana', aal => 'aal2');
select set_config('response.status', '', true);
select is(
  (tests.raise_if_refused(public.open_dispute('30000000-0000-4000-8000-000000000001',
    'The doors do not close', 'key-hana')) ->> 'status'),
  'open',
  'hana opens a dispute over her own funded payment'
);
reset role;

select * from finish();
rollback;
