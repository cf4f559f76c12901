/**
 * The data volume's name on the card, shared by the image builder (which
 * reserves the partition), the hub's storage layer (which formats and opens
 * it) and the twin's first-boot report: partition label, LUKS label, file
 * system label and device-mapper name are all this one string.
 */
export const DATA_VOLUME_NAME = 'vigil-data';
