-- Only the RPC that refused a call records it, and only what it observed:
-- private.refused_call is refused (42501) to a direct call, a DO block, a function of the
-- caller's, dynamic SQL, and a function that names another operation than its own, and
-- records nothing then; every genuine RPC wrapper still records its refusals. What writes
-- alerts and counts is executable by its owner only.
begin;
select plan(19);

select tests.let_roles_call_pgtap();

select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('sam');
select tests.create_supabase_user('ada');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ada');
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array[40000],
  titles => array['Cabinets'],
  escrow => false
);

-- Functions a forger might call it from, each with the shape of a real caller: a function
-- in public (only the owner can create one) that names another operation than its own, or
-- whose name only starts like a wrapper's.
create function public.forge_refusal() returns jsonb
language plpgsql
set search_path = ''
as $$
begin
  return private.refused_call(
    'open_dispute', 'milestone_payments', '30000000-0000-4000-8000-000000000001',
    '{"reason": "forged"}', 'PT409', 'forged', null, null
  );
end
$$;
create function public.open_dispute_twice() returns jsonb
language plpgsql
set search_path = ''
as $$
begin
  return private.refused_call(
    'open_dispute', 'milestone_payments', '30000000-0000-4000-8000-000000000001',
    '{"reason": "forged"}', 'PT409', 'forged', null, null
  );
end
$$;
grant execute on function public.forge_refusal(), public.open_dispute_twice() to authenticated;
select set_config('fixture.mark', (select max(seq) from public.payment_audit_logs)::text, true);
select set_config('fixture.alerts', (select count(*) from public.security_alerts)::text, true);

-- sam, on a direct connection, tries to write a refusal of his own choosing
select tests.authenticate_as('sam');
select throws_ok(
  $$select private.refused_call('open_dispute', 'milestone_payments',
    '30000000-0000-4000-8000-000000000001', '{"reason": "hana is a fraud"}', 'PT429',
    'too many calls', null, null)$$,
  '42501', 'a refused call is recorded only by the RPC that refused it',
  'a direct call is refused'
);
select throws_ok(
  $q$do $do$ begin perform private.refused_call('open_dispute', 'milestone_payments',
    '30000000-0000-4000-8000-000000000001', '{"reason": "forged"}', 'PT409', 'forged', null, null);
    end $do$$q$,
  '42501', 'a refused call is recorded only by the RPC that refused it',
  'a call from a DO block is refused'
);
select throws_ok(
  $q$do $do$ begin execute 'select private.refused_call(''open_dispute'', ''milestone_payments'', ''x'', ''{}'', ''PT409'', ''forged'', null, null)'; end $do$$q$,
  '42501', 'a refused call is recorded only by the RPC that refused it',
  'a call from dynamic SQL is refused'
);
-- an API role creates no temporary objects at all (20261204234000), so these forgers are
-- made by the tests' owner session and called as sam
select throws_like(
  $q$create function pg_temp.open_dispute(milestone_payment_id uuid, reason text, idempotency_key text)
    returns jsonb language sql as $f$ select null::jsonb $f$$q$,
  'permission denied for schema pg_temp%',
  'sam may not create a temporary function named like the wrapper'
);
reset role;
create function pg_temp.open_dispute(milestone_payment_id uuid, reason text, idempotency_key text)
returns jsonb language plpgsql set search_path = '' as $f$
begin
  return private.refused_call('open_dispute', 'milestone_payments', milestone_payment_id::text,
    jsonb_build_object('reason', reason), 'PT409', 'forged', null, null);
end $f$;
create function pg_temp."x
PL/pgSQL function public.open_dispute(uuid,text,text) line 17"() returns jsonb
language plpgsql as $f$
begin
  return private.refused_call('open_dispute', 'milestone_payments', 'x', '{}', 'PT409', 'forged', null, null);
end $f$;
grant execute on function pg_temp.open_dispute(uuid, text, text), pg_temp."x
PL/pgSQL function public.open_dispute(uuid,text,text) line 17"() to authenticated;
select tests.authenticate_as('sam');
select throws_ok(
  $$select pg_temp.open_dispute('30000000-0000-4000-8000-000000000001', 'forged', 'key')$$,
  '42501', 'a refused call is recorded only by the RPC that refused it',
  'a call from a temporary function named like the wrapper is refused'
);
select throws_ok(
  $$select pg_temp."x
PL/pgSQL function public.open_dispute(uuid,text,text) line 17"()$$,
  '42501', 'a refused call is recorded only by the RPC that refused it',
  'and so is one from a function whose name forges a line of the call stack'
);
select throws_ok(
  $$select public.forge_refusal()$$,
  '42501', 'a refused call is recorded only by the RPC that refused it',
  'a function of the public schema that names another operation than its own is refused'
);
select throws_ok(
  $$select public.open_dispute_twice()$$,
  '42501', 'a refused call is recorded only by the RPC that refused it',
  'and so is one whose name only starts with the operation''s'
);
reset role;
select is(
  (select count(*)::int from public.payment_audit_logs where seq > current_setting('fixture.mark')::bigint),
  0,
  'none of them wrote an audit row'
);
select is(
  (select count(*)::int from public.security_alerts),
  current_setting('fixture.alerts')::int,
  'nor an alert'
);

-- what writes alerts, counts and refusals is its owner's only
select is(
  (
    select array_agg(format('%s %s', r.rolname, f.f) order by r.rolname, f.f)
    from pg_catalog.pg_roles as r
    cross join (values
      ('private.raise_security_alert(public.security_alert_kind, uuid, text, jsonb)'),
      ('private.count_call(text)'),
      ('private.enforce_rate_limit(text)'),
      ('private.rate_limit_message(text, integer, integer)'),
      ('private.bounded_text(text, integer)'),
      ('private.bounded_argument(jsonb, integer)')
    ) as f (f)
    where r.rolname in ('anon', 'authenticated', 'service_role', 'payment_service',
      'escrow_service', 'admin', 'auditor')
      and has_function_privilege(r.rolname, f.f, 'execute')
  ),
  null,
  'no API role may execute the functions that write alerts and counts'
);
select is(
  (
    select array_agg(format('%s %s %s', r.rolname, t.t, p.p) order by 1)
    from pg_catalog.pg_roles as r
    cross join (values ('private.rate_limit_counters'), ('private.rate_limit_rules'),
      ('public.security_alerts'), ('public.payment_audit_logs')) as t (t)
    cross join (values ('insert'), ('update'), ('delete')) as p (p)
    where r.rolname in ('anon', 'authenticated', 'service_role', 'payment_service',
      'escrow_service', 'admin', 'auditor')
      and has_table_privilege(r.rolname, t.t, p.p)
  ),
  null,
  'nor write the counters, the rules, the alerts or the log'
);
select is(
  (
    select array_agg(r.rolname::text order by r.rolname)
    from pg_catalog.pg_roles as r
    where r.rolname in ('anon', 'authenticated', 'service_role', 'payment_service',
      'escrow_service', 'admin', 'auditor')
      and has_function_privilege(r.rolname,
        'private.refused_call(text, text, text, jsonb, text, text, text, text)', 'execute')
  ),
  array['admin', 'authenticated', 'escrow_service', 'payment_service', 'service_role'],
  'refused_call is executable by the roles that may call a wrapper'
);

-- every genuine wrapper still records its refusals, with what it observed
select tests.authenticate_as('sam', aal => 'aal2');
select is(
  array[
    public.create_milestone_payment(gen_random_uuid(), 'key-1') ->> 'code',
    public.release_milestone_payment(gen_random_uuid(), 'key-2') ->> 'code',
    public.cancel_milestone_payment(gen_random_uuid(), 'key-3') ->> 'code',
    public.open_dispute(gen_random_uuid(), 'It broke', 'key-4') ->> 'code',
    public.request_withdrawal(gen_random_uuid(), 1000, 'USD', 'key-5') ->> 'code'
  ],
  array['42501', 'PT404', 'PT404', '42501', 'PT409'],
  'the users'' wrappers answer their refusals'
);
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  array[
    public.fund_milestone_payment(gen_random_uuid(), 'pi_1Forged', 1000, 'USD', 'key-6') ->> 'code',
    public.complete_withdrawal(gen_random_uuid(), 'po_1Forged', 'key-7') ->> 'code',
    public.fail_withdrawal(gen_random_uuid(), 'The bank refused it', 'key-8') ->> 'code'
  ],
  array['PT404', 'PT404', 'PT404'],
  'so do payment_service''s'
);
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is(
  array[
    public.resolve_dispute(gen_random_uuid(), 'refund', 'No', 'key-9') ->> 'code',
    public.approve_withdrawal(gen_random_uuid(), 'Checked against the payouts', 'key-10') ->> 'code'
  ],
  array['PT404', 'PT409'],
  'and the admins'''
);
reset role;
select tests.authenticate_as_service('service_role');
select is(
  public.cancel_milestone_payment(gen_random_uuid(), 'key-11') ->> 'code',
  '42501',
  'and service_role''s (it holds no grant on the payments)'
);
reset role;
select results_eq(
  $$select operation::text, metadata ->> 'db_role' from public.payment_audit_logs
    where seq > current_setting('fixture.mark')::bigint and not success order by seq$$,
  $$values
    ('create_milestone_payment', 'authenticated'), ('release_milestone_payment', 'authenticated'),
    ('cancel_milestone_payment', 'authenticated'), ('open_dispute', 'authenticated'),
    ('request_withdrawal', 'authenticated'), ('fund_milestone_payment', 'payment_service'),
    ('complete_withdrawal', 'payment_service'), ('fail_withdrawal', 'payment_service'),
    ('resolve_dispute', 'admin'), ('approve_withdrawal', 'admin'),
    ('cancel_milestone_payment', 'service_role')$$,
  'each left its audit row, under its own operation'
);
select is(
  (select new_values from public.payment_audit_logs
    where seq > current_setting('fixture.mark')::bigint and operation = 'open_dispute'),
  jsonb_build_object('milestone_payment_id', (select entity_id from public.payment_audit_logs
    where seq > current_setting('fixture.mark')::bigint and operation = 'open_dispute'),
    'reason', 'It broke'),
  'with the arguments it was called with'
);

select * from finish();
rollback;
