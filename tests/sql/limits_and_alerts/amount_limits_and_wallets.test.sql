-- Amount limits per operation and per day; users read their own wallet balances only.
begin;
select plan(9);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: low limits for withdrawals, and carl's wallet
update private.settings
set value = jsonb_set(value, '{withdrawals.insert}', '{"per_operation": 5000, "per_day": 8000}')
where key = 'amount_limits';
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('sam');
insert into public.payout_methods (id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
values ('50000000-0000-0000-0000-000000000001', tests.get_supabase_uid('carl'), 'bank_account',
  tests.token_lookup('acct_1Carl01'), tests.sealed_token(), tests.token_lookup('ba_1Carl01'), 'USD');
select tests.fund_wallet(tests.get_supabase_uid('carl'), 50000);

select tests.authenticate_as('carl', aal => 'aal2');
select throws_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('50000000-0000-0000-0000-000000000001', 5001, 'USD')$$,
  'PT422', 'withdrawals.insert of 5001 USD is over the limit of 5000 per operation',
  'one withdrawal over the per-operation limit is refused'
);
select lives_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('50000000-0000-0000-0000-000000000001', 5000, 'USD')$$,
  'one at the limit goes through'
);
select throws_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('50000000-0000-0000-0000-000000000001', 3001, 'USD')$$,
  'PT422',
  'withdrawals.insert of 3001 USD would take today''s total to 8001, over the daily limit of 8000',
  'one that takes the day''s total over the daily limit is refused'
);
select lives_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('50000000-0000-0000-0000-000000000001', 3000, 'USD')$$,
  'the refused one did not count: the day''s total can still reach the limit'
);
select results_eq(
  $$select currency::text, posted_minor, reserved_minor, withdrawable_minor
    from public.my_wallet_balances()$$,
  $$values ('USD', 50000::bigint, 8000::bigint, 42000::bigint)$$,
  'carl reads his wallet: posted, reserved by his withdrawals, and what he may withdraw'
);
select throws_ok(
  'select * from private.ledger_accounts',
  '42501', 'permission denied for table ledger_accounts',
  'but not the ledger itself'
);
reset role;

select tests.authenticate_as('sam');
select is_empty(
  'select * from public.my_wallet_balances()',
  'another user sees no wallet of carl''s'
);
reset role;
select tests.clear_authentication();
select throws_ok(
  'select * from public.my_wallet_balances()',
  '42501', 'permission denied for function my_wallet_balances',
  'anon cannot call it'
);
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  (select count(*)::int from public.withdrawals where amount_minor = 5000),
  1,
  'services are not bound by the users'' amount limits, and see what was done'
);

select * from finish();
rollback;
