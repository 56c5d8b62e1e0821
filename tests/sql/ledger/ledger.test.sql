-- The ledger's invariants, held by the database: balanced transfers, no overdraft of a
-- limited account, pending transfers resolved once, an immutable history, and hot accounts
-- that are never locked.
begin;
select plan(39);

-- fixtures, as postgres
select tests.create_supabase_user('alice');
select set_config('fixture.wallet', private.ledger_wallet(tests.get_supabase_uid('alice'), 'USD')::text, true);
select set_config('fixture.clearing', private.ledger_system_account('processor_clearing', 'USD')::text, true);
select set_config('fixture.fees', private.ledger_system_account('platform_fees', 'USD')::text, true);

-- opening accounts
select is(
  private.ledger_wallet(tests.get_supabase_uid('alice'), 'USD')::text,
  current_setting('fixture.wallet'),
  'a user has one wallet per currency, opened on first use'
);
select is(
  private.ledger_system_account('platform_fees', 'USD')::text,
  current_setting('fixture.fees'),
  'the platform has one fee account per currency'
);

-- a posted transfer
select lives_ok(
  format($$select private.ledger_transfer('test_deposit', %L, %L, 1000, 'USD')$$,
    current_setting('fixture.clearing'), current_setting('fixture.wallet')),
  'a posted transfer from clearing into a wallet'
);
select results_eq(
  format($$select debits_posted, credits_posted from private.ledger_limited_balances where account_id = %L$$,
    current_setting('fixture.wallet')),
  $$values (0::bigint, 1000::bigint)$$,
  'the wallet''s balance, where its latest entry left it, holds its posted credit'
);
select results_eq(
  format($$select account_version, account_credits_posted from private.ledger_entries
    where account_id = %L$$, current_setting('fixture.wallet')),
  $$values (1::bigint, 1000::bigint)$$,
  'that entry is the wallet''s first, and carries the wallet''s totals after it'
);
select is_empty(
  format($$select id from private.ledger_entries where account_id = %L
    and (account_version, account_debits_pending, account_debits_posted, account_credits_pending,
      account_credits_posted) is distinct from (null, null, null, null, null)$$,
    current_setting('fixture.clearing')),
  'the clearing account''s entries carry no running balance: it is a hot account'
);
select results_eq(
  format($$select debits_posted, credits_posted from private.ledger_balances where account_id = %L$$,
    current_setting('fixture.clearing')),
  $$values (1000::bigint, 0::bigint)$$,
  'its balances are the sums of its entries'
);

-- overdraft
select throws_ok(
  format($$select private.ledger_transfer('test_fee', %L, %L, 1001, 'USD')$$,
    current_setting('fixture.wallet'), current_setting('fixture.fees')),
  'PT409', format('user_wallet account %s would be overdrawn', current_setting('fixture.wallet')),
  'a wallet cannot pay out more than it holds'
);
select is(
  (select count(*)::int from private.ledger_transfers where code = 'test_fee'),
  0,
  'the refused transfer left nothing behind'
);
select lives_ok(
  format($$select private.ledger_transfer('test_fee', %L, %L, 300, 'USD')$$,
    current_setting('fixture.wallet'), current_setting('fixture.fees')),
  'a wallet pays out what it holds'
);

-- two-phase: a pending transfer reserves, then is posted or voided, once
select set_config(
  'fixture.pending',
  private.ledger_transfer('test_payout', current_setting('fixture.wallet')::uuid,
    current_setting('fixture.clearing')::uuid, 500, 'USD', pending => true)::text,
  true
);
select results_eq(
  format($$select debits_pending, debits_posted, credits_posted from private.ledger_limited_balances where account_id = %L$$,
    current_setting('fixture.wallet')),
  $$values (500::bigint, 300::bigint, 1000::bigint)$$,
  'a pending transfer reserves the amount'
);
select throws_ok(
  format($$select private.ledger_transfer('test_payout', %L, %L, 201, 'USD', pending => true)$$,
    current_setting('fixture.wallet'), current_setting('fixture.clearing')),
  'PT409', format('user_wallet account %s would be overdrawn', current_setting('fixture.wallet')),
  'what is reserved cannot be spent twice'
);
select lives_ok(
  format($$select private.ledger_resolve(%L, post => true)$$, current_setting('fixture.pending')),
  'the pending transfer is posted'
);
select results_eq(
  format($$select debits_pending, debits_posted from private.ledger_limited_balances where account_id = %L$$,
    current_setting('fixture.wallet')),
  $$values (0::bigint, 800::bigint)$$,
  'posting moves the amount from pending to posted'
);
select throws_ok(
  format($$select private.ledger_resolve(%L, post => true)$$, current_setting('fixture.pending')),
  'PT409', format('pending transfer %s is already resolved', current_setting('fixture.pending')),
  'a pending transfer is posted only once'
);
select throws_ok(
  format($$select private.ledger_resolve(%L, post => false)$$, current_setting('fixture.pending')),
  'PT409', format('pending transfer %s is already resolved', current_setting('fixture.pending')),
  'a posted transfer cannot be voided afterwards'
);
select set_config(
  'fixture.voided',
  private.ledger_transfer('test_payout', current_setting('fixture.wallet')::uuid,
    current_setting('fixture.clearing')::uuid, 150, 'USD', pending => true)::text,
  true
);
select lives_ok(
  format($$select private.ledger_resolve(%L, post => false)$$, current_setting('fixture.voided')),
  'a pending transfer is voided'
);
select results_eq(
  format($$select debits_pending, debits_posted, credits_posted from private.ledger_limited_balances where account_id = %L$$,
    current_setting('fixture.wallet')),
  $$values (0::bigint, 800::bigint, 1000::bigint)$$,
  'voiding gives the reservation back'
);
select results_eq(
  format($$select account_version from private.ledger_entries where account_id = %L order by id$$,
    current_setting('fixture.wallet')),
  $$select generate_series(1, 7)::bigint$$,
  'the wallet''s entries are numbered 1 to 7, in the order they were recorded'
);
select throws_ok(
  $$select private.ledger_resolve(gen_random_uuid(), post => true)$$,
  'PT404', null,
  'resolving a transfer that is not pending is refused'
);

-- what a transfer must be
select throws_ok(
  format($$select private.ledger_transfer('test', %L, %L, 0, 'USD')$$,
    current_setting('fixture.clearing'), current_setting('fixture.wallet')),
  'PT422', 'a transfer moves a positive amount, not 0',
  'a zero amount is refused'
);
select throws_ok(
  format($$select private.ledger_transfer('test', %L, %L, 10, 'EUR')$$,
    current_setting('fixture.clearing'), current_setting('fixture.wallet')),
  'PT422',
  format('accounts %s and %s must both exist and hold EUR',
    current_setting('fixture.clearing'), current_setting('fixture.wallet')),
  'a transfer between accounts of another currency is refused'
);

-- one call that credits and debits the same wallet: what raises its room counts first, and
-- its entries are recorded in that order
select tests.create_supabase_user('bob');
select set_config('fixture.bob', private.ledger_wallet(tests.get_supabase_uid('bob'), 'USD')::text, true);
select lives_ok(
  format($$select private.ledger_transfers(array[
      private.ledger_move('test_fee', %1$L, %2$L, 50, 'USD'),
      private.ledger_move('test_deposit', %3$L, %1$L, 80, 'USD')
    ])$$,
    current_setting('fixture.bob'), current_setting('fixture.fees'), current_setting('fixture.clearing')),
  'an empty wallet can pay out, in one call, what the same call pays in'
);
select set_config(
  'fixture.bob_pending',
  private.ledger_transfer('test_deposit', current_setting('fixture.clearing')::uuid,
    current_setting('fixture.bob')::uuid, 40, 'USD', pending => true)::text,
  true
);
select private.ledger_resolve(current_setting('fixture.bob_pending')::uuid, post => true);
select results_eq(
  format($$select account_version, side, bucket, amount, account_debits_posted,
      account_credits_pending, account_credits_posted
    from private.ledger_entries where account_id = %L order by id$$, current_setting('fixture.bob')),
  $$values
    (1::bigint, 'credit', 'posted', 80::bigint, 0::bigint, 0::bigint, 80::bigint),
    (2, 'debit', 'posted', 50, 50, 0, 80),
    (3, 'credit', 'pending', 40, 50, 40, 80),
    (4, 'credit', 'posted', 40, 50, 40, 120),
    (5, 'credit', 'pending', -40, 50, 0, 120)$$,
  'its entries: the credit before the debit, the posted credit before the pending one it resolves, ids in version order'
);
select throws_ok(
  format($$select private.ledger_transfers(array[
      private.ledger_move('test_fee', %1$L, %2$L, 91, 'USD'),
      private.ledger_move('test_deposit', %3$L, %1$L, 20, 'USD')
    ])$$,
    current_setting('fixture.bob'), current_setting('fixture.fees'), current_setting('fixture.clearing')),
  'PT409', format('user_wallet account %s would be overdrawn', current_setting('fixture.bob')),
  'what the call pays in counts, and no more: 70 held plus 20 paid in do not cover 91'
);

-- every transfer balances, and money is conserved
select is_empty(
  $$select transfer_id, bucket from private.ledger_entries group by transfer_id, bucket
    having sum(amount) filter (where side = 'debit') <> sum(amount) filter (where side = 'credit')$$,
  'every transfer''s debits equal its credits, bucket by bucket'
);
select is(
  (select sum(credits_posted - debits_posted + credits_pending - debits_pending)::bigint
    from private.ledger_balances),
  0::bigint,
  'over all accounts, credits and debits cancel out'
);
select is_empty(
  $$select a.account_id from private.ledger_limited_balances as a
    join private.ledger_balances as b on b.account_id = a.account_id
    where (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
      <> (b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted)$$,
  'every limited account''s latest entry equals the sums of its entries'
);
select throws_ok(
  format($$insert into private.ledger_entries (transfer_id, account_id, side, bucket, amount,
      account_version, account_debits_pending, account_debits_posted, account_credits_pending,
      account_credits_posted)
    select transfer_id, account_id, side, bucket, amount, account_version, 0, 0, 0, 2000
    from private.ledger_entries where account_id = %L and account_version = 7$$,
    current_setting('fixture.wallet')),
  '23505', null,
  'an account''s history cannot fork: two entries never share its version'
);
select throws_ok(
  format($$insert into private.ledger_entries (transfer_id, account_id, side, bucket, amount,
      account_version, account_debits_pending, account_debits_posted, account_credits_pending,
      account_credits_posted)
    select transfer_id, account_id, 'debit', 'posted', 300, 8, 0, 1100, 0, 1000
    from private.ledger_entries where account_id = %L and account_version = 7$$,
    current_setting('fixture.wallet')),
  '23514', null,
  'an entry that leaves a limited account overdrawn is refused by the database itself'
);
set constraints private.check_transfer_balances immediate;
select throws_ok(
  format($$insert into private.ledger_entries (transfer_id, account_id, side, bucket, amount)
    select id, %L, 'debit', 'posted', 1 from private.ledger_transfers limit 1$$,
    current_setting('fixture.clearing')),
  'PT500', null,
  'an entry that unbalances its transfer is refused by the database itself'
);
set constraints private.check_transfer_balances deferred;

-- the history is never rewritten, not even by the owner
select throws_ok(
  'update private.ledger_transfers set amount = amount + 1',
  'PT409', 'ledger_transfers are immutable: post a correcting transfer instead',
  'transfers are never updated'
);
select throws_ok(
  'delete from private.ledger_entries',
  'PT409', 'ledger_entries are immutable: post a correcting transfer instead',
  'entries are never deleted'
);
select throws_ok(
  'truncate private.ledger_entries, private.ledger_transfers',
  'PT409', null,
  'the ledger is never truncated'
);

-- escrow accounts have ledger accounts, and their cached balance follows the ledger
insert into public.projects (id, owner_id, title)
values ('aaaaaaaa-0000-4000-8000-0000000000f1', tests.get_supabase_uid('alice'), 'Kitchen');
insert into public.escrow_accounts (id, user_id, project_id, currency)
values ('aaaaaaaa-0000-4000-8000-0000000000e1', tests.get_supabase_uid('alice'),
  'aaaaaaaa-0000-4000-8000-0000000000f1', 'USD');
select isnt(
  private.ledger_escrow_account('aaaaaaaa-0000-4000-8000-0000000000e1'),
  null,
  'opening an escrow account opens its ledger account'
);
select private.ledger_transfer(
  'test_funding', current_setting('fixture.clearing')::uuid,
  private.ledger_escrow_account('aaaaaaaa-0000-4000-8000-0000000000e1'), 25000, 'USD'
);
select is(
  (select balance_minor from public.escrow_accounts where id = 'aaaaaaaa-0000-4000-8000-0000000000e1'),
  25000::bigint,
  'the escrow account''s cached balance is the ledger''s'
);

-- the API roles reach none of it
select tests.authenticate_as('alice', aal => 'aal2');
select throws_ok(
  'select * from private.ledger_entries',
  '42501', 'permission denied for table ledger_entries',
  'a user cannot read the ledger'
);
select throws_ok(
  format($$select private.ledger_transfer('gift', %L, %L, 1, 'USD')$$,
    current_setting('fixture.clearing'), current_setting('fixture.wallet')),
  '42501', 'permission denied for function ledger_transfer',
  'a user cannot move money'
);
reset role;
select tests.authenticate_as_service('service_role');
select throws_ok(
  'select * from private.ledger_accounts',
  '42501', 'permission denied for schema private',
  'not even service_role reads the ledger directly'
);

select * from finish();
rollback;
