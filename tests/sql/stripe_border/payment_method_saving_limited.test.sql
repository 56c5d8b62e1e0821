-- Saving a payment method counts towards the caller's limit before Stripe is asked: the
-- payment-methods function's first call, public.begin_saving_payment_method, counts every
-- request towards payment_methods.save (20 a minute), a refused one too, and answers 429 past
-- the limit; it requires aal2, and names the caller's recorded customer. Only a signed-in
-- user may call it.
begin;
select plan(12);

select tests.let_roles_call_pgtap('payment_service');

select tests.create_supabase_user('hana');
select tests.create_supabase_user('bob');
insert into public.processor_customers (user_id, processor, processor_customer_id_sealed, processor_customer_id_lookup)
values (tests.get_supabase_uid('hana'), 'stripe', tests.sealed_token(), tests.token_lookup('cus_HanaCustomer'));

select tests.authenticate_as('hana', aal => 'aal2');
select is(
  tests.raise_if_refused(public.begin_saving_payment_method()),
  '{"customer_recorded": true}'::jsonb,
  'at aal2 the owner may save a card: she is told her customer is recorded, never its id'
);
reset role;
select tests.authenticate_as('bob', aal => 'aal2');
select is(
  tests.raise_if_refused(public.begin_saving_payment_method()),
  '{"customer_recorded": false}'::jsonb,
  'a user with no customer yet is told so (the function creates one)'
);
reset role;

select tests.authenticate_as('bob');
select is(
  public.begin_saving_payment_method() ->> 'code',
  'PT403',
  'at aal1 the call is refused, as a returned error'
);
select is(current_setting('response.status'), '403', 'answered 403');
select set_config('response.status', '', true);
reset role;
select results_eq(
  $$select success, metadata ->> 'sqlstate' from public.payment_audit_logs
    where operation = 'begin_saving_payment_method' and user_id = tests.get_supabase_uid('bob')$$,
  $$values (false, 'PT403')$$,
  'and the refusal is recorded'
);

-- hana asks again and again: every call counts, the 21st in a minute is answered 429
select tests.authenticate_as('hana', aal => 'aal2');
select results_eq(
  $$select coalesce(a ->> 'code', 'allowed'), count(*)::int
    from (select public.begin_saving_payment_method() as a from generate_series(1, 22)) as calls
    group by 1 order by 1$$,
  $$values ('PT429', 3), ('allowed', 19)$$,
  'with her first call, 20 calls are allowed and the next ones are answered 429'
);
select is(current_setting('response.status'), '429', 'answered 429');
select set_config('response.status', '', true);
reset role;
select is(
  (select call_count from private.rate_limit_counters
    where user_id = tests.get_supabase_uid('hana') and operation = 'payment_methods.save'),
  23,
  'every call counted towards her payment_methods.save limit, those past it too'
);
select results_eq(
  $$select (details ->> 'refused_calls')::int from public.security_alerts
    where kind = 'velocity_limit' and user_id = tests.get_supabase_uid('hana')
      and operation = 'begin_saving_payment_method'$$,
  $$values (3)$$,
  'the calls past the limit are summed in one alert'
);

-- nobody else calls it
select throws_ok(
  $$set local role anon; select public.begin_saving_payment_method()$$,
  '42501',
  'permission denied for function begin_saving_payment_method',
  'anon may not call it'
);
reset role;
select tests.authenticate_as('hana', aal => 'aal2', role_name => 'payment_service');
select throws_ok(
  $$select public.begin_saving_payment_method()$$,
  '42501',
  'permission denied for function begin_saving_payment_method',
  'payment_service may not call it'
);
reset role;
select throws_ok(
  $$set local role service_role; select public.begin_saving_payment_method()$$,
  '42501',
  'permission denied for function begin_saving_payment_method',
  'service_role may not call it'
);

select * from finish();
rollback;
