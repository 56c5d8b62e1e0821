-- The audit log is append-only for every role, its owner included: no role may update,
-- delete or truncate it; the owner, who holds those privileges by owning it, is refused by
-- triggers. The one update allowed is sealing: filling in an unsealed row's hashes, once.
begin;
select plan(43);

select tests.let_roles_call_pgtap();

-- fixtures, as postgres: a user's sign-up writes an audit row
select tests.create_supabase_user('alice');
select tests.create_supabase_user('aud');
update public.users set role = 'auditor' where id = tests.get_supabase_uid('aud');
select set_config(
  'fixture.seq',
  (select max(seq) from public.payment_audit_logs where entity_type = 'users')::text,
  true
);

-- every API and staff role: no UPDATE, DELETE or TRUNCATE privilege at all
create function tests.refusals_for(role_name text, how text) returns setof text
language plpgsql
as $$
begin
  if how = 'user' then
    perform tests.authenticate_as('aud', aal => 'aal2', role_name => role_name);
  elsif how = 'service' then
    perform tests.authenticate_as_service(role_name);
  else
    perform tests.clear_authentication();
  end if;
  return next throws_ok(
    format('update public.payment_audit_logs set success = false where seq = %s', current_setting('fixture.seq')),
    '42501', 'permission denied for table payment_audit_logs',
    role_name || ' cannot update the audit log'
  );
  return next throws_ok(
    format('delete from public.payment_audit_logs where seq = %s', current_setting('fixture.seq')),
    '42501', 'permission denied for table payment_audit_logs',
    role_name || ' cannot delete from the audit log'
  );
  return next throws_ok(
    'truncate public.payment_audit_logs',
    '42501', 'permission denied for table payment_audit_logs',
    role_name || ' cannot truncate the audit log'
  );
  execute 'reset role';
end
$$;
grant execute on function tests.refusals_for(text, text)
to anon, authenticated, service_role, payment_service, escrow_service, admin, auditor;

select tests.refusals_for('anon', 'anon');
select tests.refusals_for('authenticated', 'user');
select tests.refusals_for('admin', 'user');
select tests.refusals_for('auditor', 'user');
select tests.refusals_for('payment_service', 'service');
select tests.refusals_for('escrow_service', 'service');
select tests.refusals_for('service_role', 'service');
reset role;

-- the owner, postgres, holds the privileges; the triggers refuse
select throws_ok(
  format('update public.payment_audit_logs set user_role = %L where seq = %s', 'auditor', current_setting('fixture.seq')),
  '42501', format('payment_audit_logs is append-only: row %s cannot be changed', current_setting('fixture.seq')),
  'the owner cannot edit an audit row'
);
select throws_ok(
  format('delete from public.payment_audit_logs where seq = %s', current_setting('fixture.seq')),
  '42501', null,
  'the owner cannot delete an audit row that is not ten years old'
);
select throws_ok(
  'truncate public.payment_audit_logs',
  '42501', 'payment_audit_logs is append-only: it is never truncated',
  'the owner cannot truncate the audit log'
);
select lives_ok(
  format(
    'insert into public.payment_audit_logs (id, operation, entity_type, entity_id, user_role, success, seq, row_hash, prev_hash, timestamp)
     values (%L, ''INSERT'', ''users'', ''x'', ''postgres'', true, 1, sha256(''a''), sha256(''b''), now() - interval ''20 years'')',
    (select id from public.payment_audit_logs where seq = current_setting('fixture.seq')::bigint)
  ),
  'the owner may append a row'
);
select results_eq(
  $$select count(*)::int, count(row_hash)::int, bool_and(timestamp = now()),
      bool_and(id <> (select e.id from public.payment_audit_logs as e
        where e.seq = current_setting('fixture.seq')::bigint))
    from public.payment_audit_logs where seq > current_setting('fixture.seq')::bigint$$,
  $$values (1, 0, true, true)$$,
  'but it gets the next seq, an id of its own, no hashes and the current time: it cannot take a sealed row''s place or age'
);

-- sealing: an unsealed row's hashes are filled in once, and nothing else with them
select throws_ok(
  format(
    'update public.payment_audit_logs set prev_hash = sha256(''a''), row_hash = sha256(''b''), success = false where seq = %s',
    current_setting('fixture.seq')
  ),
  '42501', null,
  'a seal that also changes the row is refused'
);
select throws_ok(
  format(
    'update public.payment_audit_logs set prev_hash = sha256(''a''), row_hash = substr(sha256(''b''), 1, 31) where seq = %s',
    current_setting('fixture.seq')
  ),
  '42501', null,
  'a seal whose row_hash is not 32 bytes is refused'
);
select throws_ok(
  format(
    'update public.payment_audit_logs set row_hash = sha256(''b'') where seq = %s',
    current_setting('fixture.seq')
  ),
  '42501', null,
  'a seal without its prev_hash is refused'
);
select lives_ok(
  format(
    'update public.payment_audit_logs set prev_hash = sha256(''a''), row_hash = sha256(''b'') where seq = %s',
    current_setting('fixture.seq')
  ),
  'an unsealed row can be sealed'
);
select throws_ok(
  format(
    'update public.payment_audit_logs set row_hash = sha256(''c'') where seq = %s',
    current_setting('fixture.seq')
  ),
  '42501', null,
  'a sealed row cannot be sealed again'
);
select throws_ok(
  format('delete from public.payment_audit_logs where seq = %s', current_setting('fixture.seq')),
  '42501', null,
  'a sealed row younger than ten years cannot be deleted'
);
select throws_ok(
  'update public.payment_audit_logs set prev_hash = sha256(''a'') where row_hash is null',
  '42501', null,
  'a seal without a row_hash is refused'
);
select throws_ok(
  format(
    'update public.payment_audit_logs set metadata = metadata, row_hash = row_hash where seq = %s',
    current_setting('fixture.seq')
  ),
  '42501', null,
  'an update that leaves a sealed row as it was is refused too'
);

-- the guards on updates are chosen by the columns an update names: between them, they name
-- every column of the log, so that no update escapes both
select is(
  (
    select array_agg(a.attname::text order by a.attname)
    from pg_attribute as a
    where a.attrelid = 'public.payment_audit_logs'::regclass and a.attnum > 0
      and not a.attisdropped
      and not exists (
        select from pg_trigger as t
        where t.tgrelid = a.attrelid and not t.tgisinternal
          and t.tgfoid = 'private.guard_audit_log_row()'::regprocedure
          and (t.tgtype & 16) <> 0
          and a.attnum = any(t.tgattr::int2[])
      )
  ),
  null,
  'every column of the audit log is named by a guard on updates'
);

-- the seal records and purge records are append-only too
insert into private.audit_seals (through_seq, head_hash, sealed_rows)
values (current_setting('fixture.seq')::bigint, sha256('b'), 1);
select throws_ok(
  'update private.audit_seals set head_hash = sha256(''x'')',
  '42501', 'private.audit_seals is append-only',
  'a seal record cannot be changed'
);
select throws_ok(
  'delete from private.audit_seals',
  '42501', 'private.audit_seals is append-only',
  'a seal record cannot be deleted'
);
select throws_ok(
  'truncate private.audit_purges',
  '42501', 'private.audit_purges is append-only',
  'the purge records cannot be truncated'
);

-- sealing runs in a transaction of its own (its transaction id is part of its fence)
select throws_ok(
  'select private.seal_audit_log()',
  '25001', 'private.seal_audit_log() runs in a transaction of its own',
  'the sealer refuses to run in a transaction that has written'
);

-- retention: only the owner runs the purge (operations, not an API role), and a purge with
-- nothing old removes nothing
select tests.authenticate_as('aud', aal => 'aal2', role_name => 'auditor');
select throws_ok(
  'select private.purge_audit_logs()',
  '42501', 'permission denied for function purge_audit_logs',
  'an auditor cannot purge the audit log'
);
reset role;
select tests.authenticate_as_service('service_role');
select throws_ok(
  'select private.purge_audit_logs()',
  '42501', 'permission denied for schema private',
  'nor can service_role'
);
reset role;
select is(
  private.purge_audit_logs() ->> 'purged_rows',
  '0',
  'the owner runs the purge; nothing is ten years old'
);
select results_eq(
  $$select operation, entity_type, user_role, (new_values ->> 'purged_rows')::int
    from public.payment_audit_logs order by seq desc limit 1$$,
  $$values ('PURGE'::varchar, 'payment_audit_logs'::varchar, 'postgres'::varchar, 0)$$,
  'the purge run was itself audited'
);

select * from finish();
rollback;
