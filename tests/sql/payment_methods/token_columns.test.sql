-- The token columns (payment_methods.sql, processor tokens): who reads a processor token in each of its forms,
-- the forms a sealed token and a lookup must take, lookups set once and unique, a recorded
-- customer that is re-sealed but never changed, and an audit trail that keeps none of them.
begin;
select plan(78);

select tests.let_roles_call_pgtap();

-- Every token column, in every form, and who may read it: payment_service every form; admins
-- and service_role the lookups (support finds a row by a Stripe id); no other role any.
create temporary table token_columns (table_name text, column_name text, form text) on commit drop;
insert into token_columns values
  ('payment_methods', 'processor_payment_method_id_sealed', 'sealed'),
  ('payment_methods', 'processor_payment_method_id_lookup', 'lookup'),
  ('payment_methods', 'processor_customer_id_lookup', 'lookup'),
  ('payout_methods', 'processor_external_account_id_sealed', 'sealed'),
  ('payout_methods', 'processor_external_account_id_lookup', 'lookup'),
  ('payout_methods', 'processor_account_id_lookup', 'lookup'),
  ('processor_customers', 'processor_customer_id_sealed', 'sealed'),
  ('processor_customers', 'processor_customer_id_lookup', 'lookup'),
  ('processor_accounts', 'processor_account_id_sealed', 'sealed'),
  ('processor_accounts', 'processor_account_id_lookup', 'lookup'),
  ('funding_attempts', 'processor_payment_method_id_lookup', 'lookup'),
  ('funding_attempts', 'processor_customer_id_lookup', 'lookup');
grant select on token_columns to public;

select is(
  (select count(*)::int from token_columns as t
    join pg_attribute as a on a.attrelid = ('public.' || t.table_name)::regclass
    and a.attname = t.column_name and not a.attisdropped),
  12,
  'each token column listed exists'
);
select is(
  (select count(*)::int from pg_attribute as a
    where a.attrelid in (
      'public.payment_methods'::regclass, 'public.payout_methods'::regclass,
      'public.processor_customers'::regclass, 'public.processor_accounts'::regclass,
      'public.funding_attempts'::regclass
    )
    and a.attnum > 0 and not a.attisdropped
    and (a.attname ~ '^processor_[a-z_]+_id(_sealed|_lookup)?$')
    and a.attname <> 'processor_payment_intent_id'),
  12,
  'and every column of those tables that holds a token is listed: no plain-text column is left'
);

select results_eq(
  $$select t.table_name || '.' || t.column_name || ' ' || r.role_name
    from token_columns as t
    cross join (values ('payment_service')) as r (role_name)
    where not has_column_privilege(r.role_name, 'public.' || t.table_name, t.column_name, 'select')
    order by 1$$,
  $$select null::text where false$$,
  'payment_service reads every token column, in every form'
);
select results_eq(
  $$select t.table_name || '.' || t.column_name || ' ' || r.role_name
    from token_columns as t
    cross join (values ('admin'), ('service_role')) as r (role_name)
    where t.form = 'lookup'
    and not has_column_privilege(r.role_name, 'public.' || t.table_name, t.column_name, 'select')
    order by 1$$,
  $$select null::text where false$$,
  'admins and service_role read every lookup'
);
select results_eq(
  $$select t.table_name || '.' || t.column_name || ' ' || r.role_name
    from token_columns as t
    cross join (values ('admin'), ('service_role')) as r (role_name)
    where t.form <> 'lookup'
    and has_column_privilege(r.role_name, 'public.' || t.table_name, t.column_name, 'select')
    order by 1$$,
  $$select null::text where false$$,
  'but no sealed token'
);
select results_eq(
  $$select t.table_name || '.' || t.column_name || ' ' || r.role_name
    from token_columns as t
    cross join (values ('anon'), ('authenticated'), ('auditor'), ('escrow_service')) as r (role_name)
    where has_column_privilege(r.role_name, 'public.' || t.table_name, t.column_name, 'select')
    order by 1$$,
  $$select null::text where false$$,
  'users, auditors, escrow_service and anon read no token column in any form'
);
select results_eq(
  $$select t.table_name || '.' || t.column_name || ' ' || r.role_name
    from token_columns as t
    cross join (values ('anon'), ('authenticated'), ('admin'), ('auditor'), ('escrow_service'))
      as r (role_name)
    where (has_column_privilege(r.role_name, 'public.' || t.table_name, t.column_name, 'insert')
      or has_column_privilege(r.role_name, 'public.' || t.table_name, t.column_name, 'update'))
    order by 1$$,
  $$select null::text where false$$,
  'nor writes a sealed token or a lookup'
);
select results_eq(
  $$select a.attrelid::regclass::text || '.' || a.attname
    from pg_attribute as a
    where a.attrelid in (
      'public.payment_methods'::regclass, 'public.payout_methods'::regclass,
      'public.processor_customers'::regclass, 'public.processor_accounts'::regclass
    )
    and a.attnum > 0 and not a.attisdropped
    and not exists (
      select from token_columns as t
      where a.attrelid = ('public.' || t.table_name)::regclass and t.column_name = a.attname
    )
    and not has_column_privilege('authenticated', a.attrelid, a.attname, 'select')
    order by 1$$,
  $$select null::text where false$$,
  'a user still reads every other column of their methods, customer and account'
);

-- fixtures, as postgres
select tests.create_supabase_user('alice');
select tests.create_supabase_user('bob');
select tests.create_supabase_user('adm');
update public.users set role = 'admin' where id = tests.get_supabase_uid('adm');
insert into public.processor_customers (
  user_id, processor_customer_id_sealed, processor_customer_id_lookup
)
values (
  tests.get_supabase_uid('alice'),
  '{"v": 1, "alg": "A256GCM+A256KW", "kid": "k2026a",
    "wrapped_key": "ZJCuNp2S65PwPOD9MuaSacjHtUV90boSHmEMzH3NrqOE_uyab8o19A",
    "nonce": "CgsMDQ4PEBESExQV",
    "ciphertext": "mTRx1k5ktxZ9-6HJFIejAXR2QKKSyLzYMqLtCfXQsBdTAuC8VtCRWASF0w"}',
  'i2026a:HFebdAM_pF6BOYTRveGlHz1Ivzv6V4VVdZRQVbKUx9Y'
);
insert into public.payment_methods (
  id, user_id, type, brand, last4,
  processor_payment_method_id_sealed, processor_payment_method_id_lookup,
  processor_customer_id_lookup
)
values (
  'aaaaaaaa-0000-4000-8000-000000000001', tests.get_supabase_uid('alice'), 'credit_card',
  'visa', '4242',
  '{"v": 1, "alg": "A256GCM+A256KW", "kid": "k2026a",
    "wrapped_key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJw",
    "nonce": "AAECAwQFBgcICQoL",
    "ciphertext": "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo"}',
  'i2026a:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8',
  'i2026a:HFebdAM_pF6BOYTRveGlHz1Ivzv6V4VVdZRQVbKUx9Y'
);

-- as alice, the owner
select tests.authenticate_as('alice', aal => 'aal2');
select results_eq(
  $$select brand, last4 from public.payment_methods$$,
  $$values ('visa'::text, '4242'::char(4))$$,
  'the owner recognises her card by brand and last4'
);
select throws_ok(
  $$select processor_payment_method_id_sealed from public.payment_methods$$,
  '42501', 'permission denied for table payment_methods',
  'but cannot read it sealed'
);
select throws_ok(
  $$select processor_payment_method_id_lookup from public.payment_methods$$,
  '42501', 'permission denied for table payment_methods',
  'nor its lookup'
);
select throws_ok(
  $$select processor_payment_method_id from public.payment_methods$$,
  '42703', 'column "processor_payment_method_id" does not exist',
  'nor in the clear: no column holds it'
);
select throws_ok(
  $$select * from public.payment_methods$$,
  '42501', 'permission denied for table payment_methods',
  'so a select of every column is refused whole'
);
select throws_ok(
  $$select processor_customer_id_sealed from public.processor_customers$$,
  '42501', 'permission denied for table processor_customers',
  'nor read her customer sealed'
);
select throws_ok(
  $$update public.payment_methods
    set processor_payment_method_id_lookup = 'i2026a:BBECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8'$$,
  '42501', 'permission denied for table payment_methods',
  'nor repoint her card at another token''s lookup'
);
select throws_ok(
  $$select 1 from public.payment_methods
    where processor_payment_method_id_lookup = 'i2026a:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8'$$,
  '42501', 'permission denied for table payment_methods',
  'nor test a guess of a lookup in a filter'
);

-- as an admin (support)
reset role;
select tests.authenticate_as('adm', aal => 'aal2', role_name => 'admin');
select results_eq(
  $$select last4 from public.payment_methods
    where processor_payment_method_id_lookup = 'i2026a:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8'$$,
  $$values ('4242'::char(4))$$,
  'support finds a payment method by its lookup'
);
select results_eq(
  $$select count(*)::int from public.processor_customers
    where processor_customer_id_lookup = 'i2026a:HFebdAM_pF6BOYTRveGlHz1Ivzv6V4VVdZRQVbKUx9Y'$$,
  $$values (1)$$,
  'and a customer by its'
);
select throws_ok(
  $$select processor_payment_method_id_sealed from public.payment_methods$$,
  '42501', 'permission denied for table payment_methods',
  'but reads no sealed token'
);
select throws_ok(
  $$select processor_payment_method_id from public.payment_methods$$,
  '42703', 'column "processor_payment_method_id" does not exist',
  'and no plain one: no column holds it'
);
select throws_ok(
  $$select processor_customer_id_sealed from public.processor_customers$$,
  '42501', 'permission denied for table processor_customers',
  'nor a customer sealed'
);

select throws_ok(
  $$select payload from public.webhook_events$$,
  '42501', 'permission denied for table webhook_events',
  'nor a webhook event''s payload, which names the tokens Stripe sent'
);
select lives_ok(
  $$select id, type, status, error_message from public.webhook_events$$,
  'but reads what happened to each event'
);

-- as service_role
reset role;
select tests.authenticate_as_service('service_role');
select throws_ok(
  $$select processor_payment_method_id_sealed from public.payment_methods$$,
  '42501', 'permission denied for table payment_methods',
  'service_role reads no sealed token'
);
select lives_ok(
  $$select processor_payment_method_id_lookup from public.payment_methods$$,
  'but reads the lookups'
);

-- as payment_service: every form
reset role;
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$select processor_payment_method_id_sealed ->> 'kid', processor_customer_id_lookup::text
    from public.payment_methods$$,
  $$values ('k2026a', 'i2026a:HFebdAM_pF6BOYTRveGlHz1Ivzv6V4VVdZRQVbKUx9Y')$$,
  'payment_service reads the sealed token and its lookups'
);
select results_eq(
  $$select processor_customer_id_sealed ->> 'nonce' from public.processor_customers$$,
  $$values ('CgsMDQ4PEBESExQV')$$,
  'and the customer sealed'
);

-- the form of a sealed token: anything else is refused, whoever writes it
reset role;
create function pg_temp.with_envelope_field(field text, value jsonb) returns text
language sql as $$
  select format(
    $f$insert into public.processor_customers (
        user_id, processor_customer_id_sealed, processor_customer_id_lookup
      ) values (%L, %L, 'i2026a:CCECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8')$f$,
    tests.get_supabase_uid('bob'),
    case when value is null
      then ('{"v": 1, "alg": "A256GCM+A256KW", "kid": "k2026a",
        "wrapped_key": "ZJCuNp2S65PwPOD9MuaSacjHtUV90boSHmEMzH3NrqOE_uyab8o19A",
        "nonce": "CgsMDQ4PEBESExQV",
        "ciphertext": "mTRx1k5ktxZ9-6HJFIejAXR2QKKSyLzYMqLtCfXQsBdTAuC8VtCRWASF0w"}'::jsonb) - field
      else jsonb_set('{"v": 1, "alg": "A256GCM+A256KW", "kid": "k2026a",
        "wrapped_key": "ZJCuNp2S65PwPOD9MuaSacjHtUV90boSHmEMzH3NrqOE_uyab8o19A",
        "nonce": "CgsMDQ4PEBESExQV",
        "ciphertext": "mTRx1k5ktxZ9-6HJFIejAXR2QKKSyLzYMqLtCfXQsBdTAuC8VtCRWASF0w"}'::jsonb,
        array[field], value)
    end
  )
$$;

select throws_ok(pg_temp.with_envelope_field('v', '2'), '23514', null, 'a version other than 1 is refused');
select throws_ok(pg_temp.with_envelope_field('v', '"1"'), '23514', null, 'so is the version as text');
select throws_ok(pg_temp.with_envelope_field('alg', '"A128GCM"'), '23514', null, 'another algorithm');
select throws_ok(pg_temp.with_envelope_field('kid', '"k 1"'), '23514', null, 'a key id with a space');
select throws_ok(pg_temp.with_envelope_field('kid', '7'), '23514', null, 'a key id that is a number');
select throws_ok(pg_temp.with_envelope_field('kid', to_jsonb(repeat('k', 65))), '23514', null, 'a key id over 64 characters');
select throws_ok(pg_temp.with_envelope_field('wrapped_key', '"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"'), '23514', null, 'a wrapped key of another length');
select throws_ok(pg_temp.with_envelope_field('nonce', '"AAECAwQFBgcICQo"'), '23514', null, 'a nonce of another length');
select throws_ok(pg_temp.with_envelope_field('nonce', '"AAECAwQFBgcICQo="'), '23514', null, 'a nonce with padding');
select throws_ok(pg_temp.with_envelope_field('ciphertext', '"QUJD"'), '23514', null, 'a ciphertext shorter than its tag');
select throws_ok(pg_temp.with_envelope_field('ciphertext', '"cus_BobCust0001"'), '23514', null, 'a token where the ciphertext goes');
select throws_ok(pg_temp.with_envelope_field('extra', '"x"'), '23514', null, 'a field the envelope does not have');
select throws_ok(pg_temp.with_envelope_field('nonce', null), '23514', null, 'an envelope without its nonce');
select throws_ok(
  format(
    $$insert into public.processor_customers (
        user_id, processor_customer_id_sealed, processor_customer_id_lookup
      ) values (%L, '"cus_BobCust0001"', 'i2026a:CCECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8')$$,
    tests.get_supabase_uid('bob')
  ),
  '23514', null,
  'a token stored as the sealed value is refused'
);

-- the form of a lookup
create function pg_temp.with_lookup(value text) returns text
language sql as $$
  select format(
    $f$insert into public.processor_customers (
        user_id, processor_customer_id_sealed, processor_customer_id_lookup
      ) values (%L, '{"v": 1, "alg": "A256GCM+A256KW", "kid": "k2026a",
        "wrapped_key": "ZJCuNp2S65PwPOD9MuaSacjHtUV90boSHmEMzH3NrqOE_uyab8o19A",
        "nonce": "CgsMDQ4PEBESExQV",
        "ciphertext": "mTRx1k5ktxZ9-6HJFIejAXR2QKKSyLzYMqLtCfXQsBdTAuC8VtCRWASF0w"}', %L)$f$,
    tests.get_supabase_uid('bob'), value
  )
$$;

select throws_ok(pg_temp.with_lookup('cus_BobCust0001'), '23514', null, 'a token stored as its own lookup is refused');
select throws_ok(pg_temp.with_lookup('CCECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8'), '23514', null, 'a lookup without its key id');
select throws_ok(pg_temp.with_lookup('i2026a:CCECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh'), '23514', null, 'a lookup one character short');
select throws_ok(pg_temp.with_lookup('i2026a:CCECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8='), '23514', null, 'a lookup with padding');
select throws_ok(pg_temp.with_lookup('i 2026:CCECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8'), '23514', null, 'a lookup whose key id has a space');
select throws_ok(
  format(
    $$insert into public.processor_customers (user_id, processor_customer_id_sealed)
      values (%L, '{"v": 1, "alg": "A256GCM+A256KW", "kid": "k2026a",
        "wrapped_key": "ZJCuNp2S65PwPOD9MuaSacjHtUV90boSHmEMzH3NrqOE_uyab8o19A",
        "nonce": "CgsMDQ4PEBESExQV",
        "ciphertext": "mTRx1k5ktxZ9-6HJFIejAXR2QKKSyLzYMqLtCfXQsBdTAuC8VtCRWASF0w"}')$$,
    tests.get_supabase_uid('bob')
  ),
  '23502', null,
  'a sealed token without its lookup is refused: a row is found by its lookup'
);
select throws_ok(
  pg_temp.with_lookup('i2026a:HFebdAM_pF6BOYTRveGlHz1Ivzv6V4VVdZRQVbKUx9Y'),
  '23505', null,
  'a customer already recorded for another user is refused by its lookup'
);
select lives_ok(
  pg_temp.with_lookup('i2026a:CCECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8'),
  'a well-formed sealed token and lookup are stored'
);
select throws_ok(
  format(
    $$insert into public.payment_methods (
        user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup,
        processor_customer_id_lookup
      ) values (%L, 'credit_card',
        '{"v": 1, "alg": "A256GCM+A256KW", "kid": "k2026a",
          "wrapped_key": "ZJCuNp2S65PwPOD9MuaSacjHtUV90boSHmEMzH3NrqOE_uyab8o19A",
          "nonce": "CgsMDQ4PEBESExQV",
          "ciphertext": "mTRx1k5ktxZ9-6HJFIejAXR2QKKSyLzYMqLtCfXQsBdTAuC8VtCRWASF0w"}',
        'i2026a:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8',
        'i2026a:CCECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8')$$,
    tests.get_supabase_uid('bob')
  ),
  '23505', null,
  'a payment method already saved by another user is refused by its lookup'
);

-- a lookup is set once; a recorded customer is re-sealed, never changed
select throws_ok(
  $$update public.payment_methods
    set processor_payment_method_id_lookup = 'i2026b:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8'$$,
  'PT409', 'payment_methods.processor_payment_method_id_lookup: a token''s lookup is set once and never changes',
  'a set lookup never changes, even for the table''s owner'
);
select throws_ok(
  $$update public.processor_customers set processor_customer_id_lookup = null$$,
  'PT409', null,
  'nor is it cleared'
);
select throws_ok(
  format(
    $$insert into public.payment_methods (
        user_id, type, processor_payment_method_id_lookup, processor_customer_id_lookup
      ) values (%L, 'credit_card', 'i2026a:DDECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8',
        'i2026a:HFebdAM_pF6BOYTRveGlHz1Ivzv6V4VVdZRQVbKUx9Y')$$,
    tests.get_supabase_uid('alice')
  ),
  '23502', null,
  'a payment method is stored with its token sealed, or not at all'
);
select lives_ok(
  $$update public.processor_customers
    set processor_customer_id_sealed = jsonb_set(processor_customer_id_sealed, '{kid}', '"k2026b"')
    where user_id = tests.get_supabase_uid('alice')$$,
  'a recorded customer is re-sealed under another key'
);
select throws_ok(
  $$update public.processor_customers
    set processor_customer_id_lookup = 'i2026a:EEECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8'
    where user_id = tests.get_supabase_uid('alice')$$,
  'PT409', null,
  'but its customer never changes'
);
select throws_ok(
  $$update public.processor_customers set user_id = tests.get_supabase_uid('bob')
    where user_id = tests.get_supabase_uid('alice')$$,
  'PT409', null,
  'nor its user'
);
select lives_ok(
  $$update public.funding_attempts set processor_payment_method_id_lookup = null where false$$,
  'funding attempts have their lookups too'
);

-- `payguard keys reindex` alone moves a lookup to another index key: the tables' owner, in a
-- transaction that names the target key, while a run to it is under way
select set_config('payguard.token_reindex', 'i2026b', true);
select throws_ok(
  $$update public.payment_methods
    set processor_payment_method_id_lookup = 'i2026b:ZZECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8'
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  'PT409', 'payment_methods.processor_payment_method_id_lookup: a token''s lookup is set once and never changes',
  'not even the owner naming the key, while no run of keys reindex is under way'
);
insert into private.token_key_rotations (target_kid, kind) values ('i2026b', 'index');
select tests.authenticate_as_service('payment_service');
select throws_ok(
  $$update public.payment_methods
    set processor_payment_method_id_lookup = 'i2026b:ZZECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8'
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  'PT409', 'payment_methods.processor_payment_method_id_lookup: a token''s lookup is set once and never changes',
  'payment_service moves no lookup, even in a transaction that names a reindex'
);
reset role;
select lives_ok(
  $$update public.payment_methods
    set processor_payment_method_id_lookup = 'i2026b:ZZECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8'
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  'the tables'' owner moves a lookup to the index key the transaction names'
);
select lives_ok(
  $$update public.processor_customers
    set processor_customer_id_lookup = 'i2026b:YYECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8'
    where user_id = tests.get_supabase_uid('alice')$$,
  'and a recorded customer''s'
);
select throws_ok(
  $$update public.payment_methods
    set processor_customer_id_lookup = 'i2026c:YYECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8'
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  'PT409', 'payment_methods.processor_customer_id_lookup: a token''s lookup is set once and never changes',
  'but to no other key than the one named'
);
select set_config('payguard.token_reindex', '', true);
update private.token_key_rotations set status = 'finished', finished_at = now()
where kind = 'index';
select throws_ok(
  $$update public.payment_methods
    set processor_customer_id_lookup = 'i2026b:YYECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8'
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  'PT409', 'payment_methods.processor_customer_id_lookup: a token''s lookup is set once and never changes',
  'and in no transaction that names none'
);

-- while the index moves, a function finds the lookup stored for a token under any key
select tests.authenticate_as_service('payment_service');
select is(
  private.stored_token_lookup(array[
    'i2026c:ZZECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8',
    'i2026b:ZZECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8',
    'i2026a:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8'
  ]),
  'i2026b:ZZECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8',
  'payment_service finds the one a row stores among a token''s lookups'
);
select is(
  private.stored_token_lookup(array['i2026c:ZZECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8']),
  null,
  'and none for a token no row stores'
);
reset role;
select tests.authenticate_as('alice', aal => 'aal2');
select throws_ok(
  $$select private.stored_token_lookup(array['i2026b:ZZECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8'])$$,
  '42501', null,
  'a user cannot ask whether a token is stored'
);
reset role;

-- the audit trail keeps no form of a token: each is a fingerprint
select is(
  (select count(*)::int from public.payment_audit_logs as l
    where l.entity_type in ('payment_methods', 'processor_customers')
    and (coalesce(l.old_values::text, '') || coalesce(l.new_values::text, ''))
      ~ '(cus|pm)_Alice|HFebdAM_pF6BOYTRveGlHz1Ivzv6V4VVdZRQVbKUx9Y|AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8|mTRx1k5ktxZ9|QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo|k2026'),
  0,
  'no audit row holds a token, a lookup, a ciphertext or a key id'
);
select ok(
  (select bool_and(
      l.new_values ->> 'processor_payment_method_id_sealed' ~ '^\[redacted [0-9a-f]{16}\]$'
      and l.new_values ->> 'processor_payment_method_id_lookup' ~ '^\[redacted [0-9a-f]{16}\]$'
      and l.new_values ->> 'processor_customer_id_lookup' ~ '^\[redacted [0-9a-f]{16}\]$')
    from public.payment_audit_logs as l
    where l.entity_type = 'payment_methods' and l.operation = 'INSERT'
    and l.entity_id = 'aaaaaaaa-0000-4000-8000-000000000001'),
  'the sealed token and the lookups show as fingerprints'
);
select is(
  (select count(*)::int from public.payment_audit_logs as l
    where l.entity_type = 'processor_customers' and l.operation = 'UPDATE'
    and l.old_values ->> 'processor_customer_id_sealed'
      is distinct from l.new_values ->> 'processor_customer_id_sealed'
    and l.old_values ->> 'processor_customer_id_lookup'
      = l.new_values ->> 'processor_customer_id_lookup'),
  1,
  'a re-sealing shows as a changed sealed fingerprint under the same lookup'
);

-- each key rotation is a row of its own, audited
insert into private.token_key_rotations (target_kid) values ('k2026b');
select throws_ok(
  $$insert into private.token_key_rotations (target_kid) values ('k2026c')$$,
  '23505', null,
  'one rotation runs at a time'
);
select throws_ok(
  $$insert into private.token_key_rotations (target_kid) values ('k 2026')$$,
  '23514', null,
  'a rotation names a well-formed key id'
);
update private.token_key_rotations set status = 'finished', finished_at = now(), tokens_sealed = 3
where kind = 'envelope';
select results_eq(
  $$select operation::text, new_values ->> 'target_kid', new_values ->> 'status'
    from public.payment_audit_logs where entity_type = 'token_key_rotations'
    and new_values ->> 'kind' = 'envelope' order by seq$$,
  $$values ('INSERT'::text, 'k2026b', 'running'), ('UPDATE', 'k2026b', 'finished')$$,
  'a rotation''s start and end are in the audit trail'
);
select throws_ok(
  $$truncate private.token_key_rotations$$,
  null, null,
  'and its rows are never truncated unseen'
);

-- Stripe's events as the database keeps them name no token in the clear
reset role;
select tests.authenticate_as_service('payment_service');
select throws_ok(
  $$select public.apply_stripe_event('{"id": "evt_1RawToken01", "object": "event",
    "type": "account.updated", "account": "acct_1RawToken01", "created": 1765000000,
    "data": {"object": {"id": "acct_1RawToken01", "object": "account"}}}'::jsonb)$$,
  '55000', 'webhook event evt_1RawToken01: its payload names a processor token in the clear',
  'an event that names a token is not recorded, and not refused: Stripe delivers it again'
);
select is(
  public.apply_stripe_event(tests.as_passed_on('{"id": "evt_1RawToken02", "object": "event",
    "type": "account.updated", "account": "acct_1RawToken02", "created": 1765000000,
    "data": {"object": {"id": "acct_1RawToken02", "object": "account",
      "settings": {"payments": {"statement_descriptor": "card_present card_payments"}}}}}'::jsonb))
    ->> 'status',
  'processed',
  'the same with its tokens as lookups is applied; words that only begin like one stay'
);
reset role;
select throws_ok(
  $$insert into public.webhook_events (id, type, payload)
    values ('evt_1RawToken03', 'payout.failed',
      '{"data": {"object": {"id": "po_1Abc", "failure_message": "closed:\nba_1RawToken03"}}}')$$,
  '55000', null,
  'a token after an escape, deep in a message, is found too, whoever writes'
);
select is(
  private.without_processor_ids(
    'No such external account: ba_1RawToken04 on ' || tests.token_lookup('acct_1RawToken04')
  ),
  'No such external account: [ba_…] on [lookup]',
  'the words kept for staff or the owner name neither a token nor a lookup'
);
select ok(
  not private.holds_processor_token(tests.as_passed_on(
    '{"account": "acct_1RawToken05", "ids": ["pm_1RawToken05", "cus_RawToken05"]}'
  )),
  'lookups are not tokens'
);

select * from finish();
rollback;
