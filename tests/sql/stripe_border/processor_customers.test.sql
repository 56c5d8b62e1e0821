-- public.processor_customers and the payment methods saved under them: each user's customer at
-- the processor is recorded once (by payment_service, or by the user's first saved card) and
-- never changes; the user reads their own, no one else's; every payment method names its
-- owner's recorded customer, never another user's or one of anyone's choosing.
begin;
select plan(16);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana's customer is recorded, bob's and dora's not yet
select tests.create_supabase_user('hana');
select tests.create_supabase_user('bob');
select tests.create_supabase_user('dora');
insert into public.processor_customers (user_id, processor_customer_id_sealed, processor_customer_id_lookup)
values (tests.get_supabase_uid('hana'), tests.sealed_token(), tests.token_lookup('cus_HanaCust01'));
select set_config('fixture.bob', tests.get_supabase_uid('bob')::text, true);

-- as hana: her own customer, read only
select tests.authenticate_as('hana', aal => 'aal2');
select results_eq(
  'select user_id from public.processor_customers',
  $$values (tests.get_supabase_uid('hana'))$$,
  'a user reads their own customer'
);
select throws_ok(
  'select processor_customer_id_sealed from public.processor_customers',
  '42501', 'permission denied for table processor_customers',
  'but not its processor id, sealed: a token is payment_service''s alone'
);
select throws_ok(
  'select processor_customer_id_lookup from public.processor_customers',
  '42501', 'permission denied for table processor_customers',
  'nor its lookup'
);
select throws_ok(
  format(
    $$insert into public.processor_customers (user_id, processor_customer_id_sealed, processor_customer_id_lookup) values (%L, tests.sealed_token(), tests.token_lookup('cus_BobChosen1'))$$,
    current_setting('fixture.bob')
  ),
  '42501', 'permission denied for table processor_customers',
  'a user cannot record a customer (of their choosing, or for another user)'
);
select throws_ok(
  $$update public.processor_customers set processor_customer_id_lookup = tests.token_lookup('cus_Other0001')$$,
  '42501', 'permission denied for table processor_customers',
  'nor change theirs'
);
reset role;
select tests.authenticate_as('bob', aal => 'aal2');
select is_empty(
  'select 1 from public.processor_customers',
  'another user sees no one''s customer but their own'
);

-- as payment_service, in bob's request: the payment-methods function records his customer
reset role;
select tests.authenticate_as('bob', aal => 'aal2', role_name => 'payment_service');
select lives_ok(
  $$insert into public.processor_customers (user_id, processor_customer_id_sealed, processor_customer_id_lookup)
    values (tests.get_supabase_uid('bob'), tests.sealed_token(), tests.token_lookup('cus_BobCust001'))$$,
  'payment_service records a user''s customer'
);
select throws_ok(
  $$update public.processor_customers set processor_customer_id_lookup = tests.token_lookup('cus_BobCust002')$$,
  '42501', 'permission denied for table processor_customers',
  'payment_service cannot change a recorded customer'
);
select lives_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_BobCard001'), tests.token_lookup('cus_BobCust001'))$$,
  'then saves bob''s card under it'
);
select throws_ok(
  $$insert into public.payment_methods (id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
    values ('e0000000-0000-4000-8000-0000000000b2', 'credit_card', tests.sealed_token(), tests.token_lookup('pm_BobCard002'), tests.token_lookup('cus_BobOther01'))$$,
  'PT409', format('payment method e0000000-0000-4000-8000-0000000000b2: its customer is not the recorded customer of user %s', tests.get_supabase_uid('bob')),
  'a card under another customer than the user''s recorded one is refused'
);
select throws_ok(
  $$insert into public.payment_methods (id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
    values ('e0000000-0000-4000-8000-0000000000b3', 'credit_card', tests.sealed_token(), tests.token_lookup('pm_BobCard003'), tests.token_lookup('cus_HanaCust01'))$$,
  'PT409', format('payment method e0000000-0000-4000-8000-0000000000b3: its customer is not the recorded customer of user %s', tests.get_supabase_uid('bob')),
  'so is a card under another user''s customer'
);

-- dora has no customer yet: her first card records it, but never another user's
reset role;
select tests.authenticate_as('dora', aal => 'aal2', role_name => 'payment_service');
select throws_ok(
  $$insert into public.payment_methods (id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
    values ('e0000000-0000-4000-8000-0000000000d1', 'credit_card', tests.sealed_token(), tests.token_lookup('pm_DoraCard01'), tests.token_lookup('cus_HanaCust01'))$$,
  'PT409', 'payment method e0000000-0000-4000-8000-0000000000d1: its customer is another user''s',
  'a first card under another user''s customer is refused'
);
select lives_ok(
  $$insert into public.payment_methods (type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
    values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_DoraCard02'), tests.token_lookup('cus_DoraCust01'))$$,
  'a user''s first card is saved under a new customer'
);
select results_eq(
  $$select processor_customer_id_lookup::text, processor_customer_id_sealed is null
    from public.processor_customers where user_id = tests.get_supabase_uid('dora')$$,
  $$values (tests.token_lookup('cus_DoraCust01'), true)$$,
  'which is recorded as hers, by its lookup alone until the function seals it'
);

-- as postgres, the owner: a recorded customer never changes
reset role;
select throws_ok(
  $$update public.processor_customers set processor_customer_id_lookup = tests.token_lookup('cus_HanaCust02')
    where processor_customer_id_lookup = tests.token_lookup('cus_HanaCust01')$$,
  'PT409',
  format('the processor customer of user %s is recorded once and never changes',
    tests.get_supabase_uid('hana')),
  'not even the owner changes a recorded customer'
);
select is(
  (select count(*)::int from public.payment_methods),
  2,
  'only the two accepted cards were saved'
);

select * from finish();
rollback;
