-- The card-data guard (private.refuse_card_data, PCI DSS 3.3.1 and 3.5.1): no table stores a
-- card number (13 to 19 digits that pass Luhn, up to three separators between groups; the
-- forms beyond spaces, dashes, dots and underscores are in card_number_forms.test.sql) in any
-- value that can hold one, nor a card-verification-like key in any jsonb object, whoever
-- writes the row. Each refusal is SQLSTATE PT422 and names the table and column.
begin;
select plan(62);

-- Its payout methods are new and withdrawn to at once: their cool-down is lifted (the
-- cool-down's own tests: withdrawals/payout_method_cool_down.test.sql).
update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres (the tables' owner, which bypasses RLS)
select tests.create_supabase_user('alice');
select tests.create_supabase_user('adm');
update public.users set role = 'admin' where id = tests.get_supabase_uid('adm');
-- user ids any role can read, even those with no USAGE on the tests schema
select set_config('fixture.alice', tests.get_supabase_uid('alice')::text, true);

insert into public.payment_methods (id, user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, nickname)
values ('aaaaaaaa-0000-4000-8000-000000000001', tests.get_supabase_uid('alice'), 'credit_card',
  tests.sealed_token(), tests.token_lookup('pm_1A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), 'Everyday card');
insert into public.payout_methods (
  id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency
)
values ('aaaaaaaa-0000-4000-8000-0000000000c1', tests.get_supabase_uid('alice'), 'bank_account',
  tests.token_lookup('acct_1A2b3C4d'), tests.sealed_token(), tests.token_lookup('ba_1A2b3C4d'), 'USD');
-- money in the wallets, for the withdrawals to reserve
select tests.fund_wallet(tests.get_supabase_uid('alice'), 100000);
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
values
  ('aaaaaaaa-0000-4000-8000-0000000000d1', tests.get_supabase_uid('alice'),
    'aaaaaaaa-0000-4000-8000-0000000000c1', 20000, 'USD'),
  ('aaaaaaaa-0000-4000-8000-0000000000d2', tests.get_supabase_uid('alice'),
    'aaaaaaaa-0000-4000-8000-0000000000c1', 10000, 'USD');
insert into public.subscriptions (user_id, plan, status, processor_subscription_id, amount_minor, currency)
values (tests.get_supabase_uid('alice'), 'pro', 'active', 'sub_9Fixt1', 2900, 'USD');

-- as the owner at aal2 (so that the policies allow the writes): card numbers in a name
select tests.authenticate_as('alice', aal => 'aal2');
-- payment methods are saved by payment_service, in the owner's own request at aal2 (the
-- payment-methods function); users no longer insert them
reset role;
select tests.authenticate_as('alice', aal => 'aal2', role_name => 'payment_service');
select throws_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, nickname)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_2A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), '4242 4242 4242 4242')$$,
  'PT422', 'card number in payment_methods.nickname: store the processor''s token (pm_…) instead',
  'a card number with spaces in a payment method''s nickname is refused'
);
select throws_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, nickname)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_2A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), '4242-4242-4242-4242')$$,
  'PT422', 'card number in payment_methods.nickname: store the processor''s token (pm_…) instead',
  'a card number with dashes in a payment method''s nickname is refused'
);
select throws_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, nickname)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_2A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), '5555555555554444')$$,
  'PT422', 'card number in payment_methods.nickname: store the processor''s token (pm_…) instead',
  'a bare 16-digit card number in a nickname is refused'
);
select throws_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, nickname)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_2A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), 'my card 4111 1111 1111 1111 exp 12/29')$$,
  'PT422', 'card number in payment_methods.nickname: store the processor''s token (pm_…) instead',
  'a card number inside a sentence in a nickname is refused'
);
select throws_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, nickname)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_2A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), 'amex 3782 822463 10005')$$,
  'PT422', 'card number in payment_methods.nickname: store the processor''s token (pm_…) instead',
  'a 15-digit Amex number in its 4-6-5 grouping is refused'
);
select throws_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, brand)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_2A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), '4000056655665556')$$,
  'PT422', 'card number in payment_methods.brand: store the processor''s token (pm_…) instead',
  'a card number in the brand column is refused, naming that column'
);
select throws_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
    values ('credit_card', tests.sealed_token(), 'k1:4242424242424242AAAAAAAAAAAAAAAAAAAAAAAAAAA', tests.token_lookup('cus_1A2b3C4d'))$$,
  'PT422', 'card number in payment_methods.processor_payment_method_id_lookup: store the processor''s token (pm_…) instead',
  'a card number dressed up as a token''s lookup is refused, naming that column'
);
reset role;
select tests.authenticate_as('alice', aal => 'aal2');
select throws_ok(
  $$update public.payment_methods set nickname = '4242 4242 4242 4242'
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  'PT422', 'card number in payment_methods.nickname: store the processor''s token (pm_…) instead',
  'renaming a payment method to a card number is refused (the guard runs on update too)'
);
-- payout methods are added by payment_service, in the owner's own request at aal2 (the
-- payout-methods function); users no longer insert them
reset role;
select tests.authenticate_as('alice', aal => 'aal2', role_name => 'payment_service');
select throws_ok(
  $$insert into public.payout_methods (type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency, nickname)
    values ('debit_card', tests.token_lookup('acct_1A2b3C4d'), tests.sealed_token(), tests.token_lookup('card_1A2b3C4d'), 'USD', 'debit 4000-0566-5566-5556')$$,
  'PT422', 'card number in payout_methods.nickname: store the processor''s token (pm_…) instead',
  'a card number in a payout method''s nickname is refused'
);
reset role;
select tests.authenticate_as('alice', aal => 'aal2');
select throws_ok(
  $$insert into public.payment_transactions (amount_minor, currency, description)
    values (500, 'USD', 'paid with 4242424242424242')$$,
  'PT422', 'card number in payment_transactions.description: store the processor''s token (pm_…) instead',
  'a card number in a transaction''s description is refused'
);

-- as the owner at aal2: card numbers in metadata
-- payment methods are saved by payment_service, in the owner's own request at aal2 (the
-- payment-methods function); users no longer insert them
reset role;
select tests.authenticate_as('alice', aal => 'aal2', role_name => 'payment_service');
select throws_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, metadata)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_2A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), '{"note": "5555 5555 5555 4444"}')$$,
  'PT422', 'card number in payment_methods.metadata: store the processor''s token (pm_…) instead',
  'a card number in a top-level metadata string is refused'
);
select throws_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, metadata)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_2A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'),
      '{"billing": {"notes": ["call first", "card 4000-0566-5566-5556"]}}')$$,
  'PT422', 'card number in payment_methods.metadata: store the processor''s token (pm_…) instead',
  'a card number in a string nested in an object and an array of metadata is refused'
);
select throws_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, metadata)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_2A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), '{"billing": {"pan": 4242424242424242}}')$$,
  'PT422', 'card number in payment_methods.metadata: store the processor''s token (pm_…) instead',
  'a card number stored as a nested JSON number in metadata is refused'
);
select throws_ok(
  $$insert into public.payout_methods (type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency, metadata)
    values ('debit_card', tests.token_lookup('acct_1A2b3C4d'), tests.sealed_token(), tests.token_lookup('card_2A2b3C4d'), 'USD', '{"card": [378282246310005]}')$$,
  'PT422', 'card number in payout_methods.metadata: store the processor''s token (pm_…) instead',
  'a card number as a number in an array of a payout method''s metadata is refused'
);
reset role;
select tests.authenticate_as('alice', aal => 'aal2');
select throws_ok(
  $$insert into public.payment_transactions (amount_minor, currency, metadata)
    values (500, 'USD', '{"cards": {"4242 4242 4242 4242": "visa"}}')$$,
  'PT422', 'card number in payment_transactions.metadata: store the processor''s token (pm_…) instead',
  'a card number used as a metadata key is refused: a key is as much the column''s content as a value'
);
select throws_ok(
  $$insert into public.payment_transactions (amount_minor, currency, metadata)
    values (500, 'USD', '{"source": {"number": "4111111111111111"}}')$$,
  'PT422', 'card number in payment_transactions.metadata: store the processor''s token (pm_…) instead',
  'a card number in a transaction''s metadata is refused'
);

-- as the owner at aal2: card verification code keys
-- payment methods are saved by payment_service, in the owner's own request at aal2 (the
-- payment-methods function); users no longer insert them
reset role;
select tests.authenticate_as('alice', aal => 'aal2', role_name => 'payment_service');
select throws_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, metadata)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_2A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), '{"cvc": "123"}')$$,
  'PT422', 'card verification code key "cvc" in payment_methods.metadata: never store it',
  'a cvc key in metadata is refused'
);
select throws_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, metadata)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_2A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), '{"card": {"CVV2": "123"}}')$$,
  'PT422', 'card verification code key "CVV2" in payment_methods.metadata: never store it',
  'a nested CVV2 key, in capitals, is refused'
);
select throws_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, metadata)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_2A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), '{"security_code": ""}')$$,
  'PT422', 'card verification code key "security_code" in payment_methods.metadata: never store it',
  'a security_code key is refused, even with an empty value'
);
select throws_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, metadata)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_2A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), '{"items": [{"card-cvc": 123}]}')$$,
  'PT422', 'card verification code key "card-cvc" in payment_methods.metadata: never store it',
  'a card-cvc key inside an array is refused'
);
reset role;
select tests.authenticate_as('alice', aal => 'aal2');
select throws_ok(
  $$insert into public.payment_transactions (amount_minor, currency, metadata)
    values (500, 'USD', '{"cvv": "999"}')$$,
  'PT422', 'card verification code key "cvv" in payment_transactions.metadata: never store it',
  'a cvv key in a transaction''s metadata is refused'
);

-- as the owner at aal2: what is not card data is accepted
-- payment methods are saved by payment_service, in the owner's own request at aal2 (the
-- payment-methods function); users no longer insert them
reset role;
select tests.authenticate_as('alice', aal => 'aal2', role_name => 'payment_service');
select lives_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, nickname)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_3A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), '4242424242424241')$$,
  'a 16-digit number that fails Luhn is accepted'
);
select lives_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, nickname, metadata)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_4A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), '550e8400-e29b-41d4-a716-446655440000',
      '{"order_id": "123e4567-e89b-12d3-a456-426614174000"}')$$,
  'uuid-looking values in a name and in metadata are accepted'
);
select lives_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, nickname)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_9U2u3I4d5D'), tests.token_lookup('cus_1A2b3C4d'), 'ref 10000008-1234-4123-8123-123456789012')$$,
  'a UUID all of digits, whose first groups pass Luhn, is still a UUID, not a card number'
);
select lives_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, metadata)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_5A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'),
      '{"checks": {"cvc_check": "pass", "address_line1_check": "pass", "address_postal_code_check": "pass"}}')$$,
  'Stripe''s card checks ({"checks": {"cvc_check": "pass"}}) are accepted: cvc_check is not a code'
);
select lives_ok(
  $$insert into public.payment_methods (
      type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, brand, last4, nickname, metadata
    )
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_6A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), 'visa', '4242', 'Visa ending 4242',
      '{"phone": "+1 555 010 0199", "reference": "424242424242", "amount": 1234567890}')$$,
  'the last four digits, a phone number and runs shorter than 13 digits are accepted'
);
reset role;
select tests.authenticate_as('alice', aal => 'aal2');
select lives_ok(
  $$update public.payment_methods set nickname = 'Travel card' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  'an ordinary rename is accepted'
);
select is(
  (select count(*)::int from public.payment_methods),
  6,
  'only the fixture and the five accepted payment methods exist: no refused row was stored'
);
select is(
  (select nickname from public.payment_methods where id = 'aaaaaaaa-0000-4000-8000-000000000001'),
  'Travel card',
  'the refused rename left no card number behind'
);

-- as payment_service: the guard holds for the backend too
reset role;
select tests.authenticate_as_service('payment_service');
select throws_ok(
  $$insert into public.webhook_events (id, type, payload)
    values ('evt_1A2b3C', 'payment_method.attached',
      '{"data": {"object": {"card": {"number": "4242 4242 4242 4242", "exp_month": 12}}}}')$$,
  'PT422', 'card number in webhook_events.payload: store the processor''s token (pm_…) instead',
  'payment_service cannot store a webhook payload holding a card number'
);
select throws_ok(
  $$insert into public.webhook_events (id, type, payload)
    values ('evt_1A2b3C', 'payment_method.attached', '{"data": {"object": {"card": {"cvc": "123"}}}}')$$,
  'PT422', 'card verification code key "cvc" in webhook_events.payload: never store it',
  'payment_service cannot store a webhook payload holding a cvc'
);
select lives_ok(
  $$insert into public.webhook_events (id, type, payload)
    values ('evt_2A2b3C', 'payment_method.attached',
      '{"data": {"object": {"id": "pgtap:A2b3C4d5EA2b3C4d5EA2b3C4d5EA2b3C4d5EA2b3C4d", "card": {"brand": "visa", "last4": "4242",
        "exp_month": 12, "exp_year": 2030, "checks": {"cvc_check": "pass"}}}}}')$$,
  'payment_service stores a real Stripe payload: brand, last4, expiry and checks'
);
select throws_ok(
  format(
    $$insert into public.subscriptions (user_id, plan, status, processor_subscription_id, amount_minor, currency)
      values (%L, 'pro 4242424242424242', 'active', 'sub_1A2b3C', 2900, 'USD')$$,
    current_setting('fixture.alice')
  ),
  'PT422', 'card number in subscriptions.plan: store the processor''s token (pm_…) instead',
  'payment_service cannot store a card number in a subscription''s plan'
);
-- a failure reason is written when a payout fails, so d2's payout is sent first
update public.withdrawals set status = 'processing' where id = 'aaaaaaaa-0000-4000-8000-0000000000d2';
select throws_ok(
  $$update public.withdrawals set status = 'failed', failure_reason = 'card 4000 0566 5566 5556 declined'
    where id = 'aaaaaaaa-0000-4000-8000-0000000000d2'$$,
  'PT422', 'card number in withdrawals.failure_reason: store the processor''s token (pm_…) instead',
  'payment_service cannot store a card number in a withdrawal''s failure reason'
);
select throws_ok(
  format(
    $$insert into public.payment_methods (user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, metadata)
      values (%L, 'credit_card', tests.sealed_token(), tests.token_lookup('pm_7A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), '{"card_cvc": "123"}')$$,
    current_setting('fixture.alice')
  ),
  'PT422', 'card verification code key "card_cvc" in payment_methods.metadata: never store it',
  'payment_service cannot store a card_cvc key in a payment method''s metadata'
);
select throws_ok(
  format(
    $$insert into public.payment_transactions (user_id, amount_minor, currency, processor_transaction_id, metadata)
      values (%L, 500, 'USD', 'ch_1A2b3C4d', '{"charge": {"payment_method_details": {"card": {"number": 4111111111111111}}}}')$$,
    current_setting('fixture.alice')
  ),
  'PT422', 'card number in payment_transactions.metadata: store the processor''s token (pm_…) instead',
  'payment_service cannot store a card number deep in a transaction''s metadata'
);

-- as admin (a staff user whose JWT role is admin)
reset role;
select tests.authenticate_as('adm', aal => 'aal2', role_name => 'admin');
select throws_ok(
  format(
    $$insert into public.payment_transactions (user_id, type, amount_minor, currency, description)
      values (%L, 'refund', 500, 'USD', 'refund to 4242-4242-4242-4242')$$,
    current_setting('fixture.alice')
  ),
  'PT422', 'card number in payment_transactions.description: store the processor''s token (pm_…) instead',
  'admin cannot store a card number in a transaction''s description'
);
-- an admin writes a reason when canceling a withdrawal
select throws_ok(
  $$update public.withdrawals set status = 'canceled', failure_reason = 'paid to 4000056655665556'
    where id = 'aaaaaaaa-0000-4000-8000-0000000000d1'$$,
  'PT422', 'card number in withdrawals.failure_reason: store the processor''s token (pm_…) instead',
  'admin cannot store a card number in a withdrawal''s failure reason'
);

-- as service_role: BYPASSRLS does not bypass the guard
reset role;
select tests.authenticate_as_service('service_role');
select throws_ok(
  format(
    $$insert into public.payment_methods (user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, metadata)
      values (%L, 'credit_card', tests.sealed_token(), tests.token_lookup('pm_8A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), '{"raw": {"pan": "4242 4242 4242 4242"}}')$$,
    current_setting('fixture.alice')
  ),
  'PT422', 'card number in payment_methods.metadata: store the processor''s token (pm_…) instead',
  'service_role cannot store a card number in a payment method''s metadata'
);
select throws_ok(
  $$insert into public.webhook_events (id, type, payload) values ('evt_3A2b3C', 'charge.succeeded', '{"CVC": 123}')$$,
  'PT422', 'card verification code key "CVC" in webhook_events.payload: never store it',
  'service_role cannot store a webhook payload holding a CVC key'
);
select throws_ok(
  format(
    $$update public.subscriptions set plan = '5555-5555-5555-4444' where user_id = %L$$,
    current_setting('fixture.alice')
  ),
  'PT422', 'card number in subscriptions.plan: store the processor''s token (pm_…) instead',
  'service_role cannot update a subscription''s plan to a card number'
);

-- as postgres, the tables' owner (the audit triggers write as it): what a request brings to the
-- audit log is not refused (that would lose the record of a refusal), but its card data is
-- removed before it is stored
reset role;
insert into public.payment_audit_logs (
  operation, entity_type, entity_id, user_id, user_role, success, user_agent, ip_address,
  error_message, metadata, new_values
)
values
  ('INSERT', 'payment_methods', 'cccccccc-0000-4000-8000-000000000001',
    tests.get_supabase_uid('alice'), 'homeowner', true, 'Mozilla/5.0 (card 4242 4242 4242 4242)',
    '203.0.113.7', null, '{"path": "/rest/v1/rpc/x", "request": {"cvv": "123"}}', null),
  ('open_dispute', 'milestone_payments', 'cccccccc-0000-4000-8000-000000000002',
    tests.get_supabase_uid('alice'), 'homeowner', false, 'curl/8.5', '5555 5555 5555 4444',
    'card number 4111-1111-1111-1111 refused',
    '{"correlation_id": "4111111111111111"}', '{"reason": "my card 4111 1111 1111 1111", "amount": 5}');
select results_eq(
  $$select user_agent, ip_address::text, error_message, metadata, new_values
    from public.payment_audit_logs where entity_id like 'cccccccc-%' order by entity_id$$,
  $$values
    ('[removed: it held card data]', '203.0.113.7', null::text,
      '{"path": "/rest/v1/rpc/x", "request": "[removed: it held card data]"}'::jsonb, null::jsonb),
    ('curl/8.5', null, '[removed: it held card data]',
      '{"correlation_id": "[removed: it held card data]"}',
      '{"reason": "[removed: it held card data]", "amount": 5}')$$,
  'card numbers and verification codes a request brings are removed from its audit row (an '
  'address that is none is not kept)'
);
select lives_ok(
  format(
    $$insert into public.payment_audit_logs (operation, entity_type, entity_id, user_id, user_role, success, new_values)
      values ('INSERT', 'payment_methods', gen_random_uuid(), %L, 'homeowner', true,
        '{"brand": "visa", "last4": "4242", "checks": {"cvc_check": "pass"}}')$$,
    tests.get_supabase_uid('alice')
  ),
  'an audit entry with brand, last4 and card checks is accepted'
);
-- the separators and shapes people use to get a number past a filter
reset role;
select tests.authenticate_as('alice', aal => 'aal2');
select throws_ok(
  format($$update public.payment_methods set nickname = %L
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$, card),
  'PT422', 'card number in payment_methods.nickname: store the processor''s token (pm_…) instead',
  'a card number written ' || how || ' is refused'
)
from (
  values
    ('4111  1111 1111 1111', 'with double spaces'),
    ('4111 - 1111 - 1111 - 1111', 'with spaced dashes'),
    (E'4111\u00a01111\u00a01111\u00a01111', 'with no-break spaces'),
    (E'4111\t1111\t1111\t1111', 'with tabs'),
    ('4111.1111.1111.1111', 'with dots'),
    ('4111_1111_1111_1111', 'with underscores'),
    ('４１１１１１１１１１１１１１１１', 'in full-width digits')
) as attempts (card, how);
-- metadata is written by payment_service (users may change only nickname and is_default)
reset role;
select tests.authenticate_as_service('payment_service');
select throws_ok(
  $$update public.payment_methods set metadata = '{"card": ["4111", "1111", "1111", "1111"]}'
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  'PT422', 'card number in payment_methods.metadata: store the processor''s token (pm_…) instead',
  'a card number split across the items of a jsonb array is refused'
);
select throws_ok(
  format($$update public.payment_methods set metadata = %L
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$, jsonb_build_object(key, '123')),
  'PT422',
  format('card verification code key "%s" in payment_methods.metadata: never store it', key),
  'a card verification code under the key ' || key || ' is refused'
)
from unnest(array['cvv_code', 'cvvNumber', 'cvc_number', 'cvv2_value', 'card_verification']) as key;
select lives_ok(
  $$update public.payment_methods
    set metadata = '{"checks": {"cvc_check": "pass", "address_line1_check": "pass"}, "client_id": "c1"}'
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  'the result of a verification check, and keys that only look alike, are accepted'
);

-- the guard covers the profile and the projects too
reset role;
select tests.authenticate_as('alice');
select throws_ok(
  format($$update public.users set full_name = '4111 1111 1111 1111' where id = %L$$,
    tests.get_supabase_uid('alice')),
  'PT422', 'card number in users.full_name: store the processor''s token (pm_…) instead',
  'a card number as one''s own name is refused'
);
select lives_ok(
  format($$update public.users set phone = '+4915123456789' where id = %L$$,
    tests.get_supabase_uid('alice')),
  'a long international phone number, in E.164 form, is a phone number, not a card number'
);

reset role;
select results_eq(
  $$select count(*)::int from public.payment_methods$$,
  $$values (6)$$,
  'no refused payment method was stored, whoever tried'
);
select is(
  (select count(failure_reason)::int from public.withdrawals
    where id in ('aaaaaaaa-0000-4000-8000-0000000000d1', 'aaaaaaaa-0000-4000-8000-0000000000d2')),
  0,
  'no refused failure reason was stored'
);
select is(
  (select plan from public.subscriptions where processor_subscription_id = 'sub_9Fixt1'),
  'pro',
  'no refused plan was stored'
);

select * from finish();
rollback;
