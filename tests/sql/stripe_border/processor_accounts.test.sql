-- Connected accounts are held like customers: payment_service records each account's owner
-- once (record_processor_account; the same owner again is nothing, another PT409);
-- account.updated records the account's verification whether or not its owner or a payout
-- method is known, and mirrors it on its payout methods; a payout method names its owner's
-- recorded account (a user cannot name another's, nor one no one owns) and starts with its
-- verification; users and staff read, never write, the accounts.
begin;
select plan(29);

select tests.let_roles_call_pgtap();

select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('eve', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ada');

-- onboarding: payment_service records carl's and eve's accounts
select tests.authenticate_as('carl', aal => 'aal2');
select throws_ok(
  $$select public.record_processor_account(auth.uid(), tests.token_lookup('acct_1CarlOwn01'))$$,
  '42501', 'permission denied for function record_processor_account',
  'a user cannot record a connected account'
);
select throws_ok(
  $$insert into public.processor_accounts (processor_account_id_sealed, processor_account_id_lookup, user_id)
    values (tests.sealed_token(), tests.token_lookup('acct_1CarlOwn01'), auth.uid())$$,
  '42501', 'permission denied for table processor_accounts',
  'nor insert one'
);
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  public.record_processor_account(tests.get_supabase_uid('carl'), tests.token_lookup('acct_1CarlOwn01'))
    ->> 'verification_status',
  'unverified',
  'payment_service records carl''s account at onboarding, unverified'
);
select lives_ok(
  $$select public.record_processor_account(tests.get_supabase_uid('carl'), tests.token_lookup('acct_1CarlOwn01'))$$,
  'recording it again for carl changes nothing'
);
select throws_ok(
  $$select public.record_processor_account(tests.get_supabase_uid('eve'), tests.token_lookup('acct_1CarlOwn01'))$$,
  'PT409', format('connected account %s is another user''s', tests.account_row('acct_1CarlOwn01')),
  'it cannot be recorded for eve'
);
select throws_ok(
  $$update public.processor_accounts set user_id = tests.get_supabase_uid('eve')
    where processor_account_id_lookup = tests.token_lookup('acct_1CarlOwn01')$$,
  'PT409', format(
    'connected account %s is recorded for its owner once and never changes hands',
    tests.account_row('acct_1CarlOwn01')
  ),
  'nor handed over by an update'
);
select throws_ok(
  $$select public.record_processor_account(tests.get_supabase_uid('eve'), 'acct_1EveOwn01')$$,
  'PT422', 'a connected account is recorded with its owner and its lookup (kid:…)',
  'an account is recorded by its lookup, never by its id'
);

-- account.updated before the account has a payout method, or even an owner: kept
select is(
  public.apply_stripe_event(tests.stripe_event('account.updated', '{"id": "acct_1EveEarly01",
    "object": "account", "payouts_enabled": true}') || jsonb_build_object('account', tests.token_lookup('acct_1EveEarly01')))
    ->> 'status',
  'processed',
  'an account.updated for an account no one owns yet is applied, not refused'
);
select results_eq(
  $$select user_id, verification_status from public.processor_accounts
    where processor_account_id_lookup = tests.token_lookup('acct_1EveEarly01')$$,
  $$values (null::uuid, 'verified')$$,
  'its verification is kept'
);
select is(
  public.record_processor_account(tests.get_supabase_uid('eve'), tests.token_lookup('acct_1EveEarly01'))
    ->> 'verification_status',
  'verified',
  'recording eve as its owner keeps the verification'
);
select is(
  public.apply_stripe_event(tests.stripe_event('account.updated', '{"id": "acct_1CarlOwn01",
    "object": "account", "payouts_enabled": false,
    "requirements": {"disabled_reason": "rejected.fraud"}}')) ->> 'status',
  'processed',
  'carl''s account is restricted before he has a payout method'
);

-- payout methods name their owner's recorded account; carl names none himself (the
-- payout-methods function adds them, as payment_service in his request)
reset role;
select tests.authenticate_as('carl', aal => 'aal2');
select throws_ok(
  $$insert into public.payout_methods (type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
    values ('bank_account', tests.token_lookup('acct_1Invented01'), tests.sealed_token(), tests.token_lookup('ba_1CarlInvent01'), 'USD')$$,
  '42501', 'permission denied for table payout_methods',
  'carl cannot add a payout method with ids of his choosing'
);
reset role;
select tests.authenticate_as('carl', aal => 'aal2', role_name => 'payment_service');
select throws_ok(
  $$insert into public.payout_methods (id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
    values ('c0000000-0000-4000-8000-0000000000e7', 'bank_account', tests.token_lookup('acct_1EveEarly01'), tests.sealed_token(), tests.token_lookup('ba_1CarlOnEve01'), 'USD')$$,
  'PT409', 'payout method c0000000-0000-4000-8000-0000000000e7: its connected account is another user''s',
  'nor may the function, in his request, put one on eve''s verified account'
);
select lives_ok(
  $$insert into public.payout_methods (type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
    values ('bank_account', tests.token_lookup('acct_1CarlOwn01'), tests.sealed_token(), tests.token_lookup('ba_1CarlOwn01'), 'USD')$$,
  'the function adds carl''s payout method on his own account'
);
reset role;
select tests.authenticate_as('carl', aal => 'aal2');
select is(
  (select verification_status from public.payout_methods),
  'restricted',
  'it starts restricted, as the processor said of the account: a new payout method does not reset it'
);
select throws_ok(
  $$update public.processor_accounts set verification_status = 'verified'$$,
  '42501', 'permission denied for table processor_accounts',
  'carl cannot mark his account verified'
);
select results_eq(
  $$select user_id, verification_status from public.processor_accounts$$,
  $$values (tests.get_supabase_uid('carl'), 'restricted')$$,
  'carl reads his own account, and only his'
);
select throws_ok(
  $$select processor_account_id_sealed from public.processor_accounts$$,
  '42501', 'permission denied for table processor_accounts',
  'but not its processor id, sealed: a token is payment_service''s alone'
);
select throws_ok(
  $$select processor_account_id_lookup from public.processor_accounts$$,
  '42501', 'permission denied for table processor_accounts',
  'nor its lookup'
);
reset role;
select tests.authenticate_as('eve', aal => 'aal2', role_name => 'payment_service');
select lives_ok(
  $$insert into public.payout_methods (type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
    values ('bank_account', tests.token_lookup('acct_1EveEarly01'), tests.sealed_token(), tests.token_lookup('ba_1EveEarly01'), 'USD')$$,
  'eve''s payout method is added on her account, verified before it existed'
);
reset role;
select tests.authenticate_as('eve', aal => 'aal2');
select is(
  (select verification_status from public.payout_methods),
  'verified',
  'and it is verified at once'
);

-- a trusted writer records an account no one owns for the method's owner, never another's
reset role;
select tests.authenticate_as_service('payment_service');
select throws_ok(
  format($$insert into public.payout_methods (id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
    values ('c0000000-0000-4000-8000-0000000000e8', %L, 'bank_account', tests.token_lookup('acct_1CarlOwn01'), tests.sealed_token(), tests.token_lookup('ba_1EveOnCarl01'), 'USD')$$, tests.get_supabase_uid('eve')),
  'PT409', 'payout method c0000000-0000-4000-8000-0000000000e8: its connected account is another user''s',
  'payment_service cannot give eve a payout method on carl''s account'
);
reset role;
select tests.authenticate_as('carl', aal => 'aal2', role_name => 'payment_service');
select lives_ok(
  format($$insert into public.payout_methods (user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
    values (%L, 'bank_account', tests.token_lookup('acct_1CarlNew01'), tests.sealed_token(), tests.token_lookup('ba_1CarlNew01'), 'USD')$$, tests.get_supabase_uid('carl')),
  'payment_service adds carl''s payout method, in his request, on an account no one owned'
);
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  (select user_id from public.processor_accounts where processor_account_id_lookup = tests.token_lookup('acct_1CarlNew01')),
  tests.get_supabase_uid('carl'),
  'which records the account as carl''s'
);

-- account.updated after the payout method exists updates it
select is(
  public.apply_stripe_event(tests.stripe_event('account.updated', '{"id": "acct_1CarlOwn01",
    "object": "account", "payouts_enabled": true}')
    || jsonb_build_object('created', extract(epoch from now())::bigint + 60)) ->> 'status',
  'processed',
  'carl''s account is verified after all (a minute later)'
);
select results_eq(
  $$select a.verification_status, pm.verification_status
    from public.processor_accounts as a join public.payout_methods as pm using (processor_account_id_lookup)
    where a.processor_account_id_lookup = tests.token_lookup('acct_1CarlOwn01')$$,
  $$values ('verified', 'verified')$$,
  'the account and its payout method are verified'
);

-- staff read them, never write them
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is(
  (select count(*)::int from public.processor_accounts),
  3,
  'an admin reads every account'
);
select throws_ok(
  $$update public.processor_accounts set verification_status = 'verified'$$,
  '42501', 'permission denied for table processor_accounts',
  'but changes none'
);
reset role;
select tests.authenticate_as('eve', aal => 'aal2');
select results_eq(
  $$select user_id from public.processor_accounts$$,
  $$values (tests.get_supabase_uid('eve'))$$,
  'eve reads only her own'
);

select * from finish();
rollback;
