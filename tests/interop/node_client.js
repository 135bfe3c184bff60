'use strict';
// Node.js `soap` (npm) client driven from the CAServer ?WSDL; prints one JSON object per call.
//
//   node node_client.js get    WSDL_URL NUMBER
//   node node_client.js submit WSDL_URL CSR_PEM_FILE HOSTNAME INSTANCE FILENAME CONTACT_NAME [SUBJECT]
//   node node_client.js list   WSDL_URL [HOSTNAME INSTANCE]
//
// A SOAP fault prints {"fault": {...}} and exits with 3; a usage error exits with 2.
// Over HTTPS the server is verified against the CA certificate file named by $INTEROP_CA_FILE
// alone (an https.Agent with that `ca`; host names are checked by default), for the WSDL
// download and for every call.
// ListCertificates returns an untyped .NET DataSet (`s:schema` ref + `s:any`): `soap` turns the
// whole XML into a generic object tree, in which a single row is an object and several rows are
// an array, and attributes and namespaces are lost.  So the rows are read from the raw response
// text (`rawResponse`, also `client.lastResponse`) with the schema's column order ("rows"), and
// the generic tree is only cross-checked ("typed_rows").

const fs = require('fs');
const https = require('https');
const soap = require('soap');

const TIMEOUT_MS = 20000;

function usage() {
  process.stderr.write('usage: node_client.js get|submit|list WSDL_URL ...\n');
  process.exit(2);
}

function emit(value, code = 0) {
  process.stdout.write(JSON.stringify(value) + '\n');
  process.exitCode = code;
}

function xmlText(text) {
  return text
    .replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'")
    .replace(/&#(\d+);/g, (_, d) => String.fromCodePoint(Number(d)))
    .replace(/&#x([0-9a-fA-F]+);/g, (_, h) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&amp;/g, '&');
}

// A minimal namespace-aware reader for the DataSet part of the response.  The `soap` package
// bundles `sax`, which we use rather than regular expressions so that namespaces (the
// mandatory xmlns="" on <DefaultDataSet>) are honoured.
function datasetFromEnvelope(xml) {
  const sax = require('sax');
  const parser = sax.parser(true, { xmlns: true });
  const XSD = 'http://www.w3.org/2001/XMLSchema';
  const MSDATA = 'urn:schemas-microsoft-com:xml-msdata';
  const DIFFGR = 'urn:schemas-microsoft-com:xml-diffgram-v1';
  const stack = [];
  let datasetName = null;
  let rowName = null;
  const columns = [];
  const rows = [];
  let row = null;
  let cell = null;
  let inSequence = false;
  let inDiffgram = false;
  parser.onopentag = (node) => {
    const parent = stack[stack.length - 1];
    stack.push(node);
    if (node.uri === XSD && node.local === 'element') {
      const isDataSet = node.attributes['msdata:IsDataSet'];
      if (isDataSet && isDataSet.uri === MSDATA && isDataSet.value === 'true') {
        datasetName = node.attributes.name.value;
      } else if (parent && parent.uri === XSD && parent.local === 'choice') {
        rowName = node.attributes.name.value;
      } else if (inSequence) {
        columns.push(node.attributes.name.value);
      }
    } else if (node.uri === XSD && node.local === 'sequence') {
      inSequence = true;
    } else if (node.uri === DIFFGR && node.local === 'diffgram') {
      inDiffgram = true;
    } else if (inDiffgram && parent && parent.local === datasetName && parent.uri === '') {
      if (node.local !== rowName || node.uri !== '') {
        throw new Error(`unexpected row element {${node.uri}}${node.local}`);
      }
      row = {};
    } else if (row !== null) {
      cell = { name: node.local, text: '' };
    }
  };
  parser.ontext = (text) => { if (cell) cell.text += text; };
  parser.oncdata = (text) => { if (cell) cell.text += text; };
  parser.onclosetag = () => {
    const node = stack.pop();
    if (cell && node.local === cell.name) {
      row[cell.name] = cell.text;
      cell = null;
    } else if (row !== null && node.local === rowName && node.uri === '') {
      rows.push(row);
      row = null;
    } else if (node.uri === XSD && node.local === 'sequence') {
      inSequence = false;
    } else if (node.uri === DIFFGR && node.local === 'diffgram') {
      inDiffgram = false;
    }
  };
  parser.write(xml).close();
  if (datasetName === null || rowName === null) {
    throw new Error('no msdata:IsDataSet element in the DataSet schema');
  }
  return { rowName, columns, rows };
}

// What `soap` itself made of the DataSet: diffgram.<dataset>.<row> is an object (one row) or an
// array (several) and absent when there is none.
function rowsFromResult(result, rowName) {
  const dataset = result && result.diffgram ? result.diffgram.DefaultDataSet : null;
  if (!dataset || typeof dataset !== 'object' || !(rowName in dataset)) {
    return [];
  }
  const found = dataset[rowName];
  return (Array.isArray(found) ? found : [found]).map((r) => {
    const out = {};
    for (const [key, value] of Object.entries(r)) {
      if (key !== 'attributes') out[key] = String(value);
    }
    return out;
  });
}

function faultJson(err, client) {
  const body = err.root && err.root.Envelope && err.root.Envelope.Body;
  const fault = body && body.Fault;
  if (!fault) {
    throw err;
  }
  let detail = null;
  const raw = client.lastResponse || '';
  const match = /<detail>([\s\S]*?)<\/detail>/.exec(raw);
  if (match) {
    detail = xmlText(match[1].replace(/<[^>]+>/g, '')).trim();
  }
  return { fault: { faultcode: fault.faultcode, faultstring: fault.faultstring, detail } };
}

async function main() {
  const [command, wsdl, ...args] = process.argv.slice(2);
  if (!command || !wsdl) usage();
  const caFile = process.env.INTEROP_CA_FILE;
  const agent = caFile ? { httpsAgent: new https.Agent({ ca: fs.readFileSync(caFile) }) } : {};
  // preserveWhitespace keeps the line break that ends a PEM value (trimmed by default).
  const client = await soap.createClientAsync(wsdl, {
    preserveWhitespace: true,
    wsdl_options: { timeout: TIMEOUT_MS, ...agent },
  });
  const options = { timeout: TIMEOUT_MS, ...agent };
  try {
    if (command === 'get') {
      if (args.length !== 1) usage();
      const [result] = await client.GetCertificateAsync({ number: args[0] }, options);
      // An unknown number comes back as a wrapper without a Result element.
      const cert = result && result.GetCertificateResult ? result.GetCertificateResult : null;
      emit({ certificate: cert });
    } else if (command === 'submit') {
      if (args.length < 5 || args.length > 6) usage();
      const [csrFile, hostname, instance, filename, contact, subject] = args;
      // Properties in the WSDL sequence order: `soap` writes them in object order.
      const csr = {
        Name: `${hostname}:${instance}:${filename}`,
        Hostname: hostname,
        Instance: instance,
        Filename: filename,
        Contents: fs.readFileSync(csrFile, 'utf8'),
      };
      if (subject !== undefined) csr.Subject = subject;
      csr.ContactName = contact;
      const [result] = await client.SubmitCSRAsync({ csr }, options);
      emit({ result: result.SubmitCSRResult });
    } else if (command === 'list') {
      let call;
      if (args.length === 2) {
        call = client.ListCertificatesAsync({ hostname: args[0], instance: args[1] }, options);
      } else if (args.length === 0) {
        // "All certificates": both parameters omitted, as an IRIS client does.
        call = client.ListCertificatesAsync({}, options);
      } else {
        usage();
      }
      const [result, rawResponse] = await call;
      const dataset = datasetFromEnvelope(rawResponse);
      emit({
        row_name: dataset.rowName,
        columns: dataset.columns,
        rows: dataset.rows,
        typed_rows: rowsFromResult(result.ListCertificatesResult, dataset.rowName),
      });
    } else {
      usage();
    }
  } catch (err) {
    emit(faultJson(err, client), 3);
  }
}

main().catch((err) => {
  process.stderr.write(`error: ${err.stack || err}\n`);
  process.exit(1);
});
