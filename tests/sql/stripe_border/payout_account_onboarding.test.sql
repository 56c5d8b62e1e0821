-- Onboarding for payouts: the payout-accounts function's first call,
-- public.begin_onboarding_payout_account, counts every request towards
-- processor_accounts.onboard (20 a minute), a refused one too, and answers 429 past the limit;
-- it requires aal2 and a contractor; it names the caller's recorded connected account, or the
-- account to make under a key derived from the user, its parameters pinned for the attempt.
-- public.record_payout_account_refusal (payment_service) opens the next attempt. Only a
-- signed-in user calls the first, only payment_service the second.
begin;
select plan(31);

select tests.let_roles_call_pgtap();

select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('cleo', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('hana');
select tests.create_supabase_user('ada');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ada');
update public.users set email = 'carl@example.com' where id = tests.get_supabase_uid('carl');

-- carl, a contractor at aal2, with no account yet: the account to make, under his key
select tests.authenticate_as('carl', aal => 'aal2');
select is(
  tests.raise_if_refused(public.begin_onboarding_payout_account()),
  jsonb_build_object(
    'account', null, 'verification_status', null, 'attempt', 1,
    'idempotency_key', 'user:' || tests.get_supabase_uid('carl') || ':connected_account',
    'country', 'US', 'email', 'carl@example.com'
  ),
  'a contractor with no account is told what to make: the default country, his email, his key'
);
select is(
  tests.raise_if_refused(public.begin_onboarding_payout_account('DE')) ->> 'country',
  'US',
  'a retry sends Stripe the same request: the first request''s country holds for the attempt'
);
select is(
  tests.raise_if_refused(public.begin_onboarding_payout_account('DE')) ->> 'idempotency_key',
  'user:' || tests.get_supabase_uid('carl') || ':connected_account',
  'under the same key'
);
reset role;

-- the key's parameters are pinned even if his profile changes meanwhile
update public.users set email = 'carl.new@example.com' where id = tests.get_supabase_uid('carl');
select tests.authenticate_as('carl', aal => 'aal2');
select is(
  tests.raise_if_refused(public.begin_onboarding_payout_account()) ->> 'email',
  'carl@example.com',
  'the email pinned for the attempt is kept'
);
reset role;

-- Stripe refuses the attempt: payment_service records it, the next attempt takes its own
select tests.authenticate_as('carl', aal => 'aal2', role_name => 'payment_service');
select is(
  public.record_payout_account_refusal(
    tests.get_supabase_uid('carl'),
    'user:' || tests.get_supabase_uid('carl') || ':connected_account',
    'country_unsupported', 'Stripe refused'
  ) ->> 'next_idempotency_key',
  'user:' || tests.get_supabase_uid('carl') || ':connected_account:2',
  'payment_service records Stripe''s refusal: the next attempt has the next key'
);
select is(
  public.record_payout_account_refusal(
    tests.get_supabase_uid('carl'),
    'user:' || tests.get_supabase_uid('carl') || ':connected_account',
    'country_unsupported', 'Stripe refused'
  ) ->> 'attempt',
  '1',
  'the same refusal again changes nothing'
);
select throws_ok(
  format(
    $$select public.record_payout_account_refusal(%L, 'user:%s:connected_account:7', 'x', 'y')$$,
    tests.get_supabase_uid('carl'), tests.get_supabase_uid('carl')
  ),
  'PT409', null,
  'a refusal under a key that is not the current attempt''s is refused'
);
select throws_ok(
  format(
    $$select public.record_payout_account_refusal(%L, 'user:%s:connected_account:2', 'Bad Code', 'y')$$,
    tests.get_supabase_uid('carl'), tests.get_supabase_uid('carl')
  ),
  'PT422', null,
  'a refusal needs the processor''s error code'
);
select throws_ok(
  format(
    $$select public.record_payout_account_refusal(%L, 'user:x:connected_account', 'refused', 'y')$$,
    tests.get_supabase_uid('hana')
  ),
  'PT404', null,
  'no account is being made for hana'
);
reset role;
select tests.authenticate_as('carl', aal => 'aal2');
select is(
  tests.raise_if_refused(public.begin_onboarding_payout_account('DE')) - 'account'
    - 'verification_status',
  jsonb_build_object(
    'attempt', 2,
    'idempotency_key', 'user:' || tests.get_supabase_uid('carl') || ':connected_account:2',
    'country', 'DE', 'email', 'carl.new@example.com'
  ),
  'the next attempt pins the next request''s country and the profile''s email, under the next key'
);
select is(
  public.begin_onboarding_payout_account('usa') ->> 'code',
  'PT422',
  'a country that is not an ISO code is refused'
);
select set_config('response.status', '', true);
reset role;

-- made and recorded: his recorded account is named
select tests.authenticate_as_service('payment_service');
select lives_ok(
  $$select public.record_processor_account(tests.get_supabase_uid('carl'), tests.token_lookup('acct_1CarlOnboard'))$$,
  'payment_service records the account Stripe made'
);
reset role;
select set_config('fixture.carl_account', (
  select a.id::text from public.processor_accounts as a
  where a.processor_account_id_lookup = tests.token_lookup('acct_1CarlOnboard')
), true);
select tests.authenticate_as('carl', aal => 'aal2');
select is(
  tests.raise_if_refused(public.begin_onboarding_payout_account()),
  jsonb_build_object(
    'account', current_setting('fixture.carl_account'),
    'verification_status', 'unverified'
  ),
  'a contractor with a recorded account is told its row and its verification, never its processor id'
);
reset role;
select tests.authenticate_as_service('payment_service');
select public.apply_stripe_event(tests.as_passed_on(
  '{"id": "evt_1CarlVerified", "type": "account.updated", "account": "acct_1CarlOnboard",
    "created": 1765000000,
    "data": {"object": {"id": "acct_1CarlOnboard", "object": "account",
    "payouts_enabled": true}}}'::jsonb
));
reset role;
select tests.authenticate_as('carl', aal => 'aal2');
select is(
  tests.raise_if_refused(public.begin_onboarding_payout_account()) ->> 'verification_status',
  'verified',
  'the verification is Stripe''s latest word'
);
reset role;

-- refused: aal1, a homeowner, an admin
select tests.authenticate_as('cleo');
select is(
  public.begin_onboarding_payout_account() ->> 'code', 'PT403', 'at aal1 the call is refused'
);
select is(current_setting('response.status'), '403', 'answered 403');
select set_config('response.status', '', true);
reset role;
select tests.authenticate_as('hana', aal => 'aal2');
select is(
  public.begin_onboarding_payout_account() ->> 'message',
  'only a contractor is paid out: a connected account is made for contractors',
  'a homeowner is refused, at aal2 too'
);
select is(current_setting('response.status'), '403', 'answered 403');
select set_config('response.status', '', true);
reset role;
select tests.authenticate_as('ada', aal => 'aal2');
select is(
  public.begin_onboarding_payout_account() ->> 'code', 'PT403', 'an admin is not paid out either'
);
select set_config('response.status', '', true);
reset role;
select results_eq(
  $$select u.name, l.success, l.metadata ->> 'sqlstate' from public.payment_audit_logs as l
    join (values ('cleo'), ('hana'), ('ada')) as u (name) on l.user_id = tests.get_supabase_uid(u.name)
    where l.operation = 'begin_onboarding_payout_account' order by 1$$,
  $$values ('ada', false, 'PT403'), ('cleo', false, 'PT403'), ('hana', false, 'PT403')$$,
  'each refusal is recorded'
);
select is(
  (select count(*)::int from private.payout_account_onboardings
    where user_id in (tests.get_supabase_uid('cleo'), tests.get_supabase_uid('hana'),
      tests.get_supabase_uid('ada'))),
  0,
  'and pins nothing'
);

-- cleo asks again and again: every call counts, the 21st in a minute is answered 429
select tests.authenticate_as('cleo', aal => 'aal2');
select results_eq(
  $$select coalesce(a ->> 'code', 'allowed'), count(*)::int
    from (select public.begin_onboarding_payout_account() as a from generate_series(1, 22)) as calls
    group by 1 order by 1$$,
  $$values ('PT429', 3), ('allowed', 19)$$,
  'with her refused aal1 call, 20 calls are allowed and the next ones are answered 429'
);
select is(current_setting('response.status'), '429', 'answered 429');
select set_config('response.status', '', true);
reset role;
select is(
  (select call_count from private.rate_limit_counters
    where user_id = tests.get_supabase_uid('cleo') and operation = 'processor_accounts.onboard'),
  23,
  'every call counted towards her processor_accounts.onboard limit, those past it too'
);

-- nobody else calls them
select throws_ok(
  $$set local role anon; select public.begin_onboarding_payout_account()$$,
  '42501', 'permission denied for function begin_onboarding_payout_account',
  'anon may not begin onboarding'
);
reset role;
select throws_ok(
  $$set local role service_role; select public.begin_onboarding_payout_account()$$,
  '42501', 'permission denied for function begin_onboarding_payout_account',
  'service_role may not'
);
reset role;
select tests.authenticate_as('carl', aal => 'aal2', role_name => 'payment_service');
select throws_ok(
  $$select public.begin_onboarding_payout_account()$$,
  '42501', 'permission denied for function begin_onboarding_payout_account',
  'payment_service may not (it acts for the user only after the user''s call)'
);
reset role;
select tests.authenticate_as('carl', aal => 'aal2');
select throws_ok(
  format(
    $$select public.record_payout_account_refusal(%L, 'user:x:connected_account', 'x', 'y')$$,
    tests.get_supabase_uid('carl')
  ),
  '42501', 'permission denied for function record_payout_account_refusal',
  'a user may not record a refusal'
);
select throws_ok(
  $$select * from private.payout_account_onboardings$$,
  '42501', 'permission denied for table payout_account_onboardings',
  'nor read the onboarding records'
);
reset role;
select throws_ok(
  format(
    $$set local role service_role;
      select public.record_payout_account_refusal(%L, 'user:x:connected_account', 'x', 'y')$$,
    tests.get_supabase_uid('carl')
  ),
  '42501', 'permission denied for function record_payout_account_refusal',
  'nor may service_role'
);
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  format(
    $$select public.record_payout_account_refusal(%L, 'user:x:connected_account', 'x', 'y')$$,
    tests.get_supabase_uid('carl')
  ),
  '42501', 'permission denied for function record_payout_account_refusal',
  'nor an admin'
);
reset role;

select * from finish();
rollback;
