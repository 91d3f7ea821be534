// jsforce's Bulk API 2.0 client (conn.bulk2) against sf-emulator: insert with a failing row,
// upsert, update, delete, a job driven step by step, and the listing. Prints one JSON object of
// what the client saw; tests/emulator/test_jsforce_bulk2.py checks it against the stored records.
import jsforce from 'jsforce';

const [instanceUrl, accessToken, tag] = process.argv.slice(2);
const conn = new jsforce.Connection({ instanceUrl, accessToken, version: '62.0' });
const poll = { pollInterval: 100, pollTimeout: 60000 };
const out = {};

const inserted = await conn.bulk2.loadAndWaitForResults({
  object: 'Contact', operation: 'insert', ...poll,
  input: [
    { LastName: `Lovelace-${tag}`, FirstName: 'Ada', Description: 'a comma, and "quotes"' },
    { LastName: `Hopper-${tag}`, FirstName: 'Grace', Score__c: 7.5 },
    { FirstName: 'NoLastName' },
  ],
});
out.insert = {
  ok: inserted.successfulResults.map((r) => ({ id: r.sf__Id, created: r.sf__Created, last: r.LastName })),
  failed: inserted.failedResults.map((r) => ({ error: r.sf__Error, first: r.FirstName })),
  unprocessed: inserted.unprocessedRecords.length,
};

const upserted = await conn.bulk2.loadAndWaitForResults({
  object: 'Contact', operation: 'upsert', externalIdFieldName: 'ExternalId__c', ...poll,
  input: [{ ExternalId__c: `${tag}-1`, LastName: 'One' }, { ExternalId__c: `${tag}-2`, LastName: 'Two' }],
});
out.upsert = upserted.successfulResults.map((r) => ({ id: r.sf__Id, created: r.sf__Created, key: r.ExternalId__c }));

const ids = out.upsert.map((r) => r.id);
const updated = await conn.bulk2.loadAndWaitForResults({
  object: 'Contact', operation: 'update', ...poll,
  input: [{ Id: ids[0], FirstName: 'Uno' }],
});
out.update = { ok: updated.successfulResults.length, id: ids[0] };

const deleted = await conn.bulk2.loadAndWaitForResults({
  object: 'Contact', operation: 'delete', ...poll, input: [{ Id: ids[1] }],
});
out.delete = { ok: deleted.successfulResults.length, id: ids[1] };

// Step by step: open, upload, close, poll, results.
const job = conn.bulk2.createJob({ object: 'Contact', operation: 'insert' });
await job.open();
await job.uploadData(Array.from({ length: 120 }, (_, i) => ({ LastName: `Bulk-${tag}-${i}` })));
await job.close();
await job.poll(100, 60000);
const all = await job.getAllResults();
out.steps = { id: job.id, state: job.getInfo().state, ok: all.successfulResults.length, failed: all.failedResults.map((r) => r.sf__Error) };

console.log(JSON.stringify(out));
