-- A withdrawal is paid out in its payout method's currency, to its owner's payout method:
-- on request (the table and the RPC), for the tables' owner too, and on any later change of
-- the payout method. A stranger's payout method is refused as one that does not exist.
begin;
select plan(17);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: carl has USD and EUR in his wallets, a USD and a EUR payout method;
-- sam has a EUR payout method of his own
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('sam', metadata => '{"role": "contractor"}');
select set_config('fixture.sam', tests.get_supabase_uid('sam')::text, true);
update private.settings set value = (
  select jsonb_object_agg(level, jsonb_build_object('calls', 1000, 'seconds', 60))
  from unnest(array['low', 'medium', 'high']) as level
)
where key = 'velocity_limits';
insert into public.payout_methods (
  id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency
)
values
  ('c0000000-0000-4000-8000-0000000000d1', tests.get_supabase_uid('carl'), 'bank_account',
    tests.token_lookup('acct_1Carl01'), tests.sealed_token(), tests.token_lookup('ba_1CarlUsd'), 'USD'),
  ('c0000000-0000-4000-8000-0000000000e1', tests.get_supabase_uid('carl'), 'bank_account',
    tests.token_lookup('acct_1Carl01'), tests.sealed_token(), tests.token_lookup('ba_1CarlEur'), 'EUR'),
  ('c0000000-0000-4000-8000-0000000000e2', tests.get_supabase_uid('carl'), 'bank_account',
    tests.token_lookup('acct_1Carl01'), tests.sealed_token(), tests.token_lookup('ba_2CarlEur'), 'EUR'),
  ('50000000-0000-4000-8000-0000000000e1', tests.get_supabase_uid('sam'), 'bank_account',
    tests.token_lookup('acct_1Sam001'), tests.sealed_token(), tests.token_lookup('ba_1SamEur1'), 'EUR');
select tests.fund_wallet(tests.get_supabase_uid('carl'), 100000, 'USD');
select tests.fund_wallet(tests.get_supabase_uid('carl'), 100000, 'EUR');
select tests.fund_wallet(tests.get_supabase_uid('sam'), 100000, 'USD');

-- as carl at aal2: the currency must be his payout method's
select tests.authenticate_as('carl', aal => 'aal2');
select throws_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('c0000000-0000-4000-8000-0000000000e1', 10000, 'USD')$$,
  'PT422',
  'a withdrawal in USD cannot go to payout method c0000000-0000-4000-8000-0000000000e1, which pays out in EUR',
  'a withdrawal in USD to a EUR payout method is refused'
);
select throws_ok(
  $$select tests.raise_if_refused(public.request_withdrawal(
    'c0000000-0000-4000-8000-0000000000e1', 10000, 'USD', 'currency-1'))$$,
  'PT422',
  'a withdrawal in USD cannot go to payout method c0000000-0000-4000-8000-0000000000e1, which pays out in EUR',
  'and so is the same request through request_withdrawal'
);
select is(
  (select count(*)::int from public.withdrawals),
  0,
  'neither was recorded'
);
select lives_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('c0000000-0000-4000-8000-0000000000e1', 10000, 'EUR')$$,
  'a withdrawal in EUR to the EUR payout method is accepted'
);
select is(
  tests.raise_if_refused(public.request_withdrawal(
    'c0000000-0000-4000-8000-0000000000d1', 10000, 'USD', 'currency-2')) ->> 'currency',
  'USD',
  'a withdrawal in USD to the USD payout method is accepted through the RPC'
);
reset role;
select results_eq(
  $$select a.currency::text, b.debits_pending from private.ledger_limited_balances as b
    join private.ledger_accounts as a on a.id = b.account_id
    where a.kind = 'user_wallet' and a.user_id = tests.get_supabase_uid('carl')
    order by a.currency$$,
  $$values ('EUR', 10000::bigint), ('USD', 10000::bigint)$$,
  'each reserved its amount in the wallet of its own currency'
);

-- as sam at aal2: another user's payout method is answered as one that does not exist,
-- whatever its currency (nothing says it is carl's, or in EUR)
select tests.authenticate_as('sam', aal => 'aal2');
select throws_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('c0000000-0000-4000-8000-0000000000e1', 10000, 'USD')$$,
  '42501',
  'new row violates row-level security policy "Users can withdraw only to their own payout methods" for table "withdrawals"',
  'a USD withdrawal to another user''s EUR payout method is refused by the policy'
);
select throws_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('00000000-0000-4000-8000-0000000000e1', 10000, 'USD')$$,
  '42501',
  'new row violates row-level security policy "Users can withdraw only to their own payout methods" for table "withdrawals"',
  'exactly as a withdrawal to a payout method that does not exist'
);
select throws_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('50000000-0000-4000-8000-0000000000e1', 10000, 'USD')$$,
  'PT422',
  'a withdrawal in USD cannot go to payout method 50000000-0000-4000-8000-0000000000e1, which pays out in EUR',
  'while his own EUR payout method tells him its currency'
);

-- as the tables' owner: the key holds where no policy applies
reset role;
select throws_ok(
  format(
    $$insert into public.withdrawals (user_id, payout_method_id, amount_minor, currency)
      values (%L, 'c0000000-0000-4000-8000-0000000000d1', 1000, 'USD')$$,
    tests.get_supabase_uid('sam')
  ),
  '23503',
  'insert or update on table "withdrawals" violates foreign key constraint "withdrawals_payout_method_owner_currency_fkey"',
  'the owner of the tables cannot record a withdrawal to another user''s payout method'
);
select throws_ok(
  format(
    $$insert into public.withdrawals (user_id, payout_method_id, amount_minor, currency)
      values (%L, 'c0000000-0000-4000-8000-0000000000e1', 1000, 'USD')$$,
    tests.get_supabase_uid('carl')
  ),
  'PT422',
  'a withdrawal in USD cannot go to payout method c0000000-0000-4000-8000-0000000000e1, which pays out in EUR',
  'nor one in another currency than its payout method''s'
);

-- as payment_service, which may change payout methods: not the currency or owner of one
-- that withdrawals name
select tests.authenticate_as_service('payment_service');
select throws_ok(
  $$update public.payout_methods set currency = 'USD' where id = 'c0000000-0000-4000-8000-0000000000e1'$$,
  'PT409',
  'payout method c0000000-0000-4000-8000-0000000000e1 has withdrawals: its owner and currency never change',
  'payment_service cannot change the currency of a payout method that a withdrawal names'
);
select throws_ok(
  format(
    $$update public.payout_methods set user_id = %L where id = 'c0000000-0000-4000-8000-0000000000d1'$$,
    current_setting('fixture.sam')
  ),
  'PT409',
  'payout method c0000000-0000-4000-8000-0000000000d1 has withdrawals: its owner and currency never change',
  'nor hand it to another owner'
);
select lives_ok(
  $$update public.payout_methods set currency = 'GBP' where id = 'c0000000-0000-4000-8000-0000000000e2'$$,
  'it may still correct the currency of a payout method that no withdrawal names'
);
select lives_ok(
  $$update public.payout_methods set bank_name = 'Renamed Bank' where id = 'c0000000-0000-4000-8000-0000000000e1'$$,
  'and change anything else of one that withdrawals name'
);

-- as service_role and as the owner of the tables: the same
reset role;
select tests.authenticate_as_service('service_role');
select throws_ok(
  $$update public.payout_methods set currency = 'USD' where id = 'c0000000-0000-4000-8000-0000000000e1'$$,
  'PT409',
  'payout method c0000000-0000-4000-8000-0000000000e1 has withdrawals: its owner and currency never change',
  'service_role cannot change it either'
);
reset role;
select throws_ok(
  $$update public.payout_methods set currency = 'USD' where id = 'c0000000-0000-4000-8000-0000000000e1'$$,
  'PT409',
  'payout method c0000000-0000-4000-8000-0000000000e1 has withdrawals: its owner and currency never change',
  'nor the owner of the tables'
);

select * from finish();
rollback;
