// The node-token route: a node's MODEL_NOT_AVAILABLE answer, counted as unmet demand.
import { modelUnavailableBody } from '../node-api.js';
import type { Operation } from './operation.js';

export const NODE_OPS: readonly Operation[] = [
  {
    path: '/api/model-unavailable',
    method: 'post',
    node: true,
    operationId: 'reportModelUnavailable',
    tag: 'node',
    summary: 'Count a MODEL_NOT_AVAILABLE answer of a node as unmet demand.',
    description:
      'The report a node sends its scheduler when getModelPath / `modelhub models path` answers MODEL_NOT_AVAILABLE ' +
      '(`--scheduler URL/api/model-unavailable` makes the hub that scheduler). Each report adds 1 to the model\'s ' +
      '`unavailable_count` in GET /api/model-usage/ranking, which ranks by request_count + unavailable_count. ' +
      'The token is checked before the body is read; every request counts against the per-client rate limit (600 a minute unless configured).',
    body: { json: modelUnavailableBody },
    responses: {
      202: { description: 'Counted.', json: 'ReportAccepted' },
      415: { description: 'The body is neither JSON nor text.', errors: ['INVALID_REQUEST'] },
    },
    errors: ['INVALID_REQUEST'],
  },
];
