"""A clip with known tracks for the live and tracking tests: three shapes that data/shapes-tiny.weights detects (a
circle, a square, a triangle: data/shapes.names' classes 0, 1, 2) gliding over a noisy background, as the shapes
set draws them (../shared/datasets/shapes). The circle goes left along the top, the square right along the bottom;
the triangle climbs diagonally to the left, passing close by each. All three cross the vertical line x = 112."""
import cv2
import numpy as np

WIDTH, HEIGHT = 224, 144
COUNT_LINE = (112, 0, 112, HEIGHT - 1)
# Per shape: class, track id in the truth, colour (BGR), size (w, h), first and last centre.
SHAPES = [(0, 1, (200, 150, 160), (28, 28), (200, 28), (24, 30)),
          (1, 2, (40, 220, 40), (40, 26), (24, 112), (200, 110)),
          (2, 3, (60, 60, 230), (34, 36), (154, 120), (70, 24))]


def shape_boxes(frame, frames):
    """The truth of frame `frame` (0-based) of a `frames`-long clip: (track id, class, left, top, width, height)."""
    t = frame / (frames - 1)
    boxes = []
    for class_id, track_id, _, (w, h), (x0, y0), (x1, y1) in SHAPES:
        cx, cy = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
        boxes.append((track_id, class_id, int(round(cx - w / 2)), int(round(cy - h / 2)), w, h))
    return boxes


def draw_frame(frame, frames, rng):
    image = np.clip(rng.normal((200, 170, 60), 18, (HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
    for (_, class_id, left, top, w, h), (_, _, colour, *_) in zip(shape_boxes(frame, frames), SHAPES):
        if class_id == 0:
            cv2.circle(image, (left + w // 2, top + h // 2), w // 2, colour, -1, cv2.LINE_AA)
        elif class_id == 1:
            cv2.rectangle(image, (left, top), (left + w - 1, top + h - 1), colour, -1)
        else:
            corners = np.array([(left + w // 2, top), (left, top + h - 1), (left + w - 1, top + h - 1)], np.int32)
            cv2.fillPoly(image, [corners], colour, cv2.LINE_AA)
    return image


def write_clip(path, frames=40, fps=10):
    """The clip as an MJPG .avi at `path`; returns the truth of every frame (shape_boxes)."""
    rng = np.random.default_rng(7)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    for frame in range(frames):
        writer.write(draw_frame(frame, frames, rng))
    writer.release()
    return [shape_boxes(frame, frames) for frame in range(frames)]
