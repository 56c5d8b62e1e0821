-- The border's RPCs that users and staff call record and count their refusals like every other
-- RPC: a refused begin_funding_attempt or resolve_processor_inconsistency is answered with its
-- status (response.status) and PostgREST's error body, leaves an audit row, and counts towards
-- the caller's velocity limit (429 past it, one summarised alert). Every call counts, a retry
-- that finds the open attempt too. A stranger learns nothing: another user's payment or payment
-- method gets the answer a missing one gets.
begin;
select plan(17);

select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana pays carl for p1 (400.00 USD); hana and bob each have a card
select tests.create_supabase_user('hana');
select tests.create_supabase_user('bob');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ada');
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array[40000],
  titles => array['Cabinets']
);
insert into public.payment_methods (id, user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
values
('40000000-0000-4000-8000-000000000001', tests.get_supabase_uid('hana'), 'credit_card', tests.sealed_token(), tests.token_lookup('pm_HanaCard01'), tests.token_lookup('cus_HanaCust01')),
('40000000-0000-4000-8000-000000000003', tests.get_supabase_uid('bob'), 'credit_card', tests.sealed_token(), tests.token_lookup('pm_BobCard001'), tests.token_lookup('cus_BobCust001'));
insert into public.processor_inconsistencies (id, kind, processor_object_id, amount_minor, currency)
values ('50000000-0000-4000-8000-000000000001', 'payout_unrecorded', 'po_Lost01', 1000, 'USD');

-- bob, a stranger, asks to fund hana's payment
select tests.authenticate_as('bob');
select is(
  tests.answers_for(
    $$select public.begin_funding_attempt(%L, '40000000-0000-4000-8000-000000000003')$$,
    array['30000000-0000-4000-8000-000000000001'::uuid]
  ),
  jsonb_build_array(jsonb_build_object(
    'status', 404, 'code', 'PT404', 'message', 'no milestone payment <id> that you may fund',
    'details', null, 'hint', null
  )),
  'a stranger gets for hana''s payment the answer a missing payment gets: 404, as a returned error'
);
select is(
  tests.answers_for(
    $$select public.begin_funding_attempt('30000000-0000-4000-8000-000000000001', %L)$$,
    array['40000000-0000-4000-8000-000000000001'::uuid]
  ),
  jsonb_build_array(jsonb_build_object(
    'status', 404, 'code', 'PT404', 'message', 'no milestone payment 30000000-0000-4000-8000-000000000001 that you may fund',
    'details', null, 'hint', null
  )),
  'and whatever payment method he names: the payment is checked first'
);
select is(
  public.begin_funding_attempt('30000000-0000-4000-8000-000000000001',
    '40000000-0000-4000-8000-000000000003') ->> 'code',
  'PT404',
  'the refusal is returned, not raised'
);
select is(
  current_setting('response.status'),
  '404',
  'with its status in response.status, as PostgREST answers it'
);
reset role;
select results_eq(
  $$select operation::text, entity_id::text, user_id, success, metadata ->> 'sqlstate',
      new_values ->> 'payment_method_id'
    from public.payment_audit_logs where operation = 'begin_funding_attempt'$$,
  $$values ('begin_funding_attempt', '30000000-0000-4000-8000-000000000001',
    tests.get_supabase_uid('bob'), false, 'PT404', '40000000-0000-4000-8000-000000000003')$$,
  'the refusal leaves an audit row: who asked, what, and the error'
);
select is(
  (select count(*)::int from public.funding_attempts),
  0,
  'and opens nothing'
);

-- bob keeps probing: his refusals count; past the limit (20 a minute) he is answered 429
select tests.authenticate_as('bob');
select results_eq(
  $$select a ->> 'code', count(*)::int
    from (
      select public.begin_funding_attempt(gen_random_uuid(), '40000000-0000-4000-8000-000000000003') as a
      from generate_series(1, 24)
    ) as calls
    group by 1 order by 1$$,
  $$values ('PT404', 19), ('PT429', 5)$$,
  'with the first refusal, 20 refusals are answered 404, and the next 5 are answered 429'
);
reset role;
select is(
  (select count(*)::int from public.payment_audit_logs
    where operation = 'begin_funding_attempt' and user_id = tests.get_supabase_uid('bob')),
  21,
  'each refusal up to the limit is recorded, and the first one past it'
);
select results_eq(
  $$select (details ->> 'refused_calls')::int from public.security_alerts
    where kind = 'velocity_limit' and user_id = tests.get_supabase_uid('bob')
      and operation = 'begin_funding_attempt'$$,
  $$values (5)$$,
  'the refusals past the limit are summed in one alert'
);

-- hana, the payer: her calls count too, a retry that finds the open attempt as well
select tests.authenticate_as('hana');
select is(
  public.begin_funding_attempt('30000000-0000-4000-8000-000000000001',
    '40000000-0000-4000-8000-000000000001') ->> 'attempt',
  '1',
  'the payer opens attempt 1'
);
select is(
  public.begin_funding_attempt('30000000-0000-4000-8000-000000000001',
    '40000000-0000-4000-8000-000000000001') ->> 'attempt',
  '1',
  'and her retry finds it'
);
reset role;
select is(
  (select call_count from private.rate_limit_counters
    where user_id = tests.get_supabase_uid('hana') and operation = 'milestone_payments.fund'),
  2,
  'both calls count towards her milestone_payments.fund limit'
);

-- an admin resolving an inconsistency: a refusal is answered and recorded too
select tests.authenticate_as('ada', aal => 'aal1', role_name => 'admin');
select is(
  public.resolve_processor_inconsistency('50000000-0000-4000-8000-000000000001',
    'Paid out by hand after the bank''s answer.') ->> 'code',
  'PT403',
  'without aal2 an admin''s resolution is refused, as a returned error'
);
select is(current_setting('response.status'), '403', 'answered 403');
select set_config('response.status', '', true);
reset role;
select results_eq(
  $$select user_id, success, metadata ->> 'sqlstate', new_values ->> 'resolution'
    from public.payment_audit_logs where operation = 'resolve_processor_inconsistency'$$,
  $$values (tests.get_supabase_uid('ada'), false, 'PT403',
    'Paid out by hand after the bank''s answer.')$$,
  'and recorded'
);
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select ok(
  (tests.raise_if_refused(public.resolve_processor_inconsistency(
    '50000000-0000-4000-8000-000000000001', 'Paid out by hand after the bank''s answer.'
  )) ->> 'resolved_at') is not null,
  'at aal2 the admin resolves it'
);
select is(
  public.resolve_processor_inconsistency('00000000-0000-4000-8000-0000000000ff',
    'Paid out by hand after the bank''s answer.') ->> 'code',
  'PT404',
  'an inconsistency that does not exist is answered 404'
);

select * from finish();
rollback;
