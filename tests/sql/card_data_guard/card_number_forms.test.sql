-- The card-number guard reads every form a card number is still one in: digits of any script,
-- zero-width characters anywhere, any short run of punctuation, symbols, white space or
-- control characters between digit groups, in every column and every JSON value, key or
-- array; and users.phone is an E.164 number, read like any other column. Text that holds no
-- card number is still accepted. (tests/py/test_card_guard_corpus.py measures both ways on
-- corpora of thousands of lines, and checks every Unicode digit.)
begin;
select plan(28);

select tests.let_roles_call_pgtap();

-- fixtures, as postgres
select tests.create_supabase_user('alice');
insert into public.payment_methods (id, user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, nickname)
values ('aaaaaaaa-0000-4000-8000-000000000001', tests.get_supabase_uid('alice'), 'credit_card',
  tests.sealed_token(), tests.token_lookup('pm_1A2b3C4d5E'), tests.token_lookup('cus_1A2b3C4d'), 'Everyday card');

-- the forms of the issue, each read as a card number
select is(
  (
    select array_agg(how order by how) from (
      values
        (e'4242\u20134242\u20144242\u20154242', 'en dash, em dash, horizontal bar'),
        (e'4242\u22124242\u22124242\u22124242', 'minus signs'),
        (e'4242\u20114242\ufe634242\uff0d4242', 'non-breaking, small and full-width hyphens'),
        (e'4242\u200b4242\u200c4242\u200d4242', 'zero-width space, non-joiner and joiner'),
        (e'4\u20602\u20604\u20602\ufeff4242\u00ad4242\u31644242', 'word joiner, BOM, soft hyphen, Hangul filler'),
        ('4242/4242/4242/4242', 'slashes'),
        ('4242|4242:4242+4242', 'a pipe, a colon and a plus'),
        (e'4242\t4242\n4242\r\n4242', 'a tab, a newline, a carriage return'),
        (e'4242 \t\n 4242 - 4242 //4242', 'runs of white space and punctuation'),
        ('٤٢٤٢ ٤٢٤٢ ٤٢٤٢ ٤٢٤٢', 'Arabic-Indic digits'),
        ('४२४२४२४२४२४२४२४२', 'Devanagari digits'),
        ('৪২৪২-৪২৪২-৪২৪২-৪২৪২', 'Bengali digits'),
        ('๔๒๔๒๔๒๔๒๔๒๔๒๔๒๔๒', 'Thai digits'),
        ('𝟒𝟐𝟒𝟐 𝟒𝟐𝟒𝟐 𝟒𝟐𝟒𝟐 𝟒𝟐𝟒𝟐', 'mathematical bold digits'),
        ('⁴²⁴²⁴²⁴²⁴²⁴²⁴²⁴²', 'superscript digits'),
        ('4٢4२4২4๒4２4𝟐4²4²', 'digits of eight scripts mixed'),
        (e'4\u03012\u03014\u03012\u0301 4242 4242 4242', 'combining marks on the digits'),
        ('ref 12 4242 4242 4242 4242', 'after an unrelated number'),
        ('4242 4242 42424242-0000-4000-8000-000000000000', 'running into a UUID')
    ) as attempts (card, how)
    where not private.holds_card_number(card)
  ),
  null,
  'a card number is found in every form: other dashes, zero-width characters, slashes, '
  'other scripts'' digits'
);

-- ASCII punctuation, not only spaces, dashes, dots and underscores (every Unicode dash, space,
-- control and format character is tried in tests/py/test_card_guard_corpus.py)
select is(
  (
    select array_agg(separator order by separator)
    from unnest(array['/', '|', ':', '+', '\', '*', '#', '~', '=', ',', ';', '@', '!', '?', '%', '&']) as separator
    where not private.holds_card_number('4111' || separator || '1111' || separator || '1111' || separator || '1111')
  ),
  null,
  'ASCII punctuation and symbols separate digit groups, not only spaces, dashes, dots and underscores'
);

-- the limits of the rule: letters end a run, four separators apart is apart, Luhn must pass
select ok(
  not private.holds_card_number('4242x4242x4242x4242'),
  'a letter between the groups ends the run: not a card number'
);
select ok(
  not private.holds_card_number('4242----4242 -- 4242 // 4242'),
  'groups four separators apart (a run of white space counts as one) are apart: not a card number'
);
select ok(
  private.holds_card_number(e'4242---4242 - 4242 /\t\n\t 4242'),
  'groups three separators apart are one number'
);
select ok(
  not private.holds_card_number('4242–4242–4242–4241'),
  'a number that fails Luhn is no card number, whatever its form'
);
select ok(
  not private.holds_card_number('550e8400-e29b-41d4-a716-446655440000 and 12345678-1234-4123-8123-123456789012'),
  'a UUID''s groups are not read as one number'
);
select ok(
  not private.holds_card_number('2024年12月04日10時30分15秒 入金確認'),
  'letters of other scripts end runs of digits too'
);

-- the guard on a table: as the owner of a payment method (at aal2, as the policies need)
select tests.authenticate_as('alice', aal => 'aal2');
select throws_ok(
  format($$update public.payment_methods set nickname = %L
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$, card),
  'PT422', 'card number in payment_methods.nickname: store the processor''s token (pm_…) instead',
  'a card number written with ' || how || ' in a nickname is refused'
)
from (
  values
    (e'4242\u20134242\u20134242\u20134242', 'en dashes'),
    (e'4242\u200b4242\u200b4242\u200b4242', 'zero-width spaces'),
    ('4242/4242/4242/4242', 'slashes'),
    ('٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢', 'Arabic-Indic digits'),
    (e'card\t4242\t4242\n4242\t4242', 'tabs and a newline')
) as attempts (card, how);
select lives_ok(
  $$update public.payment_methods set nickname = 'Travel 2024/12 #3 – spare'
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  'a nickname with a date, a number and a dash is accepted'
);

-- the guard on JSON, written by payment_service: values as stored, keys, arrays
reset role;
select tests.authenticate_as_service('payment_service');
select throws_ok(
  format($$update public.payment_methods set metadata = %L
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$, metadata),
  'PT422', 'card number in payment_methods.metadata: store the processor''s token (pm_…) instead',
  'a card number ' || how || ' in metadata is refused'
)
from (
  values
    (jsonb_build_object('note', e'4242\t4242\t4242\t4242'), 'with tabs (\t in the JSON text)'),
    ('{"a": {"b": [["4242", "4242"], ["4242", "4242"]]}}'::jsonb, 'split across nested arrays'),
    (jsonb_build_object('cards', jsonb_build_object(e'4242\u20134242\u20134242\u20134242', 1)), 'in a key, with dashes'),
    ('{"n": [4242, 4242, 4242, 4242]}'::jsonb, 'as numbers across an array'),
    (jsonb_build_object('x', '٤٢٤٢-٤٢٤٢-٤٢٤٢-٤٢٤٢'), 'in Arabic-Indic digits')
) as attempts (metadata, how);
select lives_ok(
  $$update public.payment_methods
    set metadata = '{"ids": ["550e8400-e29b-41d4-a716-446655440000"], "created": 1733308215,
      "at": "2024-12-04T10:30:15Z", "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}]}'
    where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  'metadata with ids, a time, a timestamp and items is accepted'
);

-- users.phone: a real format, and no exemption from the guard
reset role;
select tests.authenticate_as('alice');
select lives_ok(
  format($$update public.users set phone = '+14155550123' where id = %L$$, tests.get_supabase_uid('alice')),
  'a phone number in E.164 form is accepted'
);
select throws_ok(
  format($$update public.users set phone = '+1 415 555 0123' where id = %L$$, tests.get_supabase_uid('alice')),
  'PT422', 'users.phone must be an E.164 number: + and 7 to 15 digits, without spaces',
  'a phone number with spaces is refused, saying the format'
);
select throws_ok(
  format($$update public.users set phone = '4242424242424242' where id = %L$$, tests.get_supabase_uid('alice')),
  'PT422', 'users.phone must be an E.164 number: + and 7 to 15 digits, without spaces',
  'a 16-digit card number in the phone column is refused: no phone number has 16 digits'
);
select throws_ok(
  format($$update public.users set phone = '+4242424242424242' where id = %L$$, tests.get_supabase_uid('alice')),
  'PT422', 'users.phone must be an E.164 number: + and 7 to 15 digits, without spaces',
  'nor with a + in front'
);
select throws_ok(
  format($$update public.users set phone = '+378282246310005' where id = %L$$, tests.get_supabase_uid('alice')),
  'PT422', 'card number in users.phone: store the processor''s token (pm_…) instead',
  'a 15-digit card number in E.164 form is refused by the card-data guard, which reads the column'
);
reset role;
select results_eq(
  format($$select phone from public.users where id = %L$$, tests.get_supabase_uid('alice')),
  $$values ('+14155550123')$$,
  'only the accepted number was stored'
);

-- the settings and the fee schedule, which the audit trail records, are guarded too
select throws_ok(
  $$insert into private.settings (key, value, description)
    values ('guard_probe', '{"pan": "4242 4242 4242 4242"}', 'a probe')$$,
  'PT422', 'card number in settings.value: store the processor''s token (pm_…) instead',
  'a setting holding a card number is refused, even for the owner'
);
select throws_ok(
  $$update private.settings set description = '4242/4242/4242/4242' where key = 'escrow_hold_seconds'$$,
  'PT422', 'card number in settings.description: store the processor''s token (pm_…) instead',
  'a setting''s description holding a card number is refused'
);

select * from finish();
rollback;
